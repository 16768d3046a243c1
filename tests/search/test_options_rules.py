"""``SearchOptions``' checks, one rule at a time: each whole-number option at and below its
bound, the seconds, ``max_cost`` and ``lr`` at their edges, and the text of each refusal (the
CLI and the Python call share them)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from samtune.errors import ConfigError
from samtune.search._options import SearchOptions, flag, split_columns

LOW = {f.name: f.metadata["low"] for f in fields(SearchOptions) if f.metadata["low"] is not None}


def test_the_whole_number_options_are_those_with_a_bound():
    assert LOW == {"trials": 1, "epochs": 1, "batch_size": 1, "confirm_seeds": 1,
                   "max_confirm_seeds": 1, "top_k": 1, "threads": 1, "workers": 1, "heartbeat": 1}


@pytest.mark.parametrize("name", sorted(LOW))
def test_a_whole_number_at_its_bound_is_taken_and_below_it_bools_and_floats_are_refused(name):
    assert getattr(SearchOptions(**{name: LOW[name]}), name) == LOW[name]
    for bad in (LOW[name] - 1, True, 2.0):
        with pytest.raises(ConfigError) as err:
            SearchOptions(**{name: bad})
        assert str(err.value) == f"{flag(name)} must be a whole number >= 1, but got {bad!r}."


@pytest.mark.parametrize("name", ["batch_size", "max_confirm_seeds", "threads"])
def test_none_is_taken_where_it_is_the_default(name):
    assert getattr(SearchOptions(**{name: None}), name) is None


@pytest.mark.parametrize("name", ["trials", "epochs", "top_k"])
def test_none_is_refused_where_the_default_is_a_number(name):
    with pytest.raises(ConfigError, match=f"{flag(name)} must be a whole number >= 1, but got None"):
        SearchOptions(**{name: None})


@pytest.mark.parametrize("name", ["timeout", "time_budget"])
def test_seconds_must_be_a_positive_number(name):
    assert getattr(SearchOptions(**{name: 0.5}), name) == 0.5
    assert getattr(SearchOptions(**{name: 3}), name) == 3
    for bad in (0, -1.0, True, "5"):
        with pytest.raises(ConfigError) as err:
            SearchOptions(**{name: bad})
        assert str(err.value) == f"{flag(name)} must be a positive number of seconds, but got {bad!r}."


def test_max_cost_is_a_number_at_least_1():
    assert SearchOptions(max_cost=1).max_cost == 1
    assert SearchOptions(max_cost=1.5).max_cost == 1.5
    for bad in (0.99, True, "2"):
        with pytest.raises(ConfigError, match=rf"--max-cost must be a number >= 1 .* but got {bad!r}"):
            SearchOptions(max_cost=bad)


def test_a_fixed_lr_lies_in_0_to_10():
    assert SearchOptions(lr=10).lr == 10
    for bad in (0, -0.1, 10.01):
        with pytest.raises(ConfigError, match=rf"--lr must be in \(0, 10\], but got {bad!r}\."):
            SearchOptions(lr=bad)


def test_an_unknown_pruner_names_the_choices():
    with pytest.raises(ConfigError) as err:
        SearchOptions(pruner="best")
    assert str(err.value) == "unknown pruner 'best'; choose one of: forgetting, median, hyperband, none."


@pytest.mark.parametrize("bad", ["", "  ", None, 3])
def test_a_metric_must_be_a_name(bad):
    with pytest.raises(ConfigError, match="--metric must be a metric name or cost:FILE.csv"):
        SearchOptions(metric=bad)


def test_an_unknown_metric_fails_before_any_data_and_a_cost_file_is_left_for_the_data():
    with pytest.raises(ConfigError, match="f2"):
        SearchOptions(metric="f2")
    assert SearchOptions(metric="cost:/nowhere.csv").metric == "cost:/nowhere.csv"
    assert SearchOptions(metric=" macro_f1").metric == " macro_f1"


def test_drop_columns_are_split_on_commas_and_blanks_left_out():
    assert SearchOptions(drop="id, name,,").drop == ("id", "name")
    assert SearchOptions(drop=["a ", "b"]).drop == ("a", "b")
    assert split_columns(None) == ()
    assert flag("max_confirm_seeds") == "--max-confirm-seeds"
