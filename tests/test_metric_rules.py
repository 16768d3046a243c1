"""Rules of the test metrics: construction, the paired SE against plain references, messages."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from samtune.errors import ConfigError
from samtune.metrics import METRICS, Metric, parse_metric, per_class_recall

# K = 4: class 0 has 4 examples, class 1 one, class 2 three, class 3 none.
Y = np.array([0, 0, 0, 0, 1, 2, 2, 2])
A = [np.array([0, 0, 1, 0, 1, 2, 3, 2]), np.array([0, 2, 0, 0, 0, 2, 2, 1]),
     np.array([1, 0, 0, 0, 1, 2, 2, 2])]
B = [np.array([0, 0, 0, 3, 0, 2, 1, 1]), np.array([0, 1, 1, 0, 1, 2, 2, 0])]
COSTS = np.array([[0, 1, 2, 1], [3, 0, 1, 1], [1, 5, 0, 2], [1, 1, 1, 0]])
SKLEARN = {
    "accuracy": skm.accuracy_score,
    "balanced_accuracy": skm.balanced_accuracy_score,
    "macro_f1": lambda t, p: skm.f1_score(t, p, average="macro", labels=range(4), zero_division=0),
    "worst_class_recall": lambda t, p: skm.recall_score(
        t, p, average=None, labels=range(4), zero_division=0).min(),
}


def _utility(name: str, t: np.ndarray, p: np.ndarray) -> float:
    if name == "cost":
        return -float(COSTS[t, p].mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(SKLEARN[name](t, p))


def _metric(name: str) -> Metric:
    return Metric("cost:/c.csv", 4, COSTS) if name == "cost" else Metric(name, 4)


# Construction


def test_one_class_is_enough_and_zero_classes_are_refused() -> None:
    """num_classes may be 1; below 1 it is refused naming the value."""
    assert Metric("accuracy", 1).score([0, 0], [0, 0]) == 1.0
    with pytest.raises(ValueError, match=r"num_classes must be at least 1, but got self\.num_classes=0\."):
        Metric("accuracy", 0)
    with pytest.raises(ValueError, match=r"name must be one of .* or 'cost:FILE', but got self\.name='f1'\."):
        Metric("f1", 2)


def test_a_cost_metric_needs_a_k_by_k_matrix_and_only_it_takes_one() -> None:
    """cost: needs a K x K matrix; other metrics refuse one."""
    for matrix in (None, [[0, 1]]):
        with pytest.raises(ValueError, match=r"^a cost metric needs a 2 x 2 cost_matrix\.$"):
            Metric("cost:/c.csv", 2, matrix)
    with pytest.raises(ValueError, match=r"only a cost metric takes a cost_matrix, but got self\.name='accuracy'\."):
        Metric("accuracy", 2, [[0, 1], [1, 0]])


def test_the_cost_matrix_is_a_private_read_only_float_copy() -> None:
    """The metric keeps a float copy: the caller's array can change, the copy cannot."""
    given = np.array([[0, 1], [4, 0]])
    metric = Metric("cost:/c.csv", 2, given)
    given[1, 0] = 100
    assert isinstance(metric.cost_matrix, np.ndarray) and metric.cost_matrix.dtype == np.float64
    assert metric.cost_matrix.tolist() == [[0.0, 1.0], [4.0, 0.0]]
    assert metric.score([1, 0], [0, 0]) == 2.0
    with pytest.raises(ValueError, match="read-only"):
        metric.cost_matrix[0, 1] = 7.0
    assert Metric("cost:/c.csv", 2, [[0, 1], [4, 0]]).cost_matrix.flags.writeable is False


# Labels


def test_scores_of_absent_classes_are_zero_without_warnings() -> None:
    """A class never true nor predicted scores 0 silently (zero_division=0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Metric("worst_class_recall", 3).score([0, 1], [0, 1]) == 0.0
        assert Metric("macro_f1", 3).score([0, 1], [0, 1]) == pytest.approx(2 / 3)
    assert per_class_recall([0, 0], [0, 1], 3) == [0.5, 0.0, 0.0]


def test_bad_label_vectors_are_refused_naming_which() -> None:
    """Errors name y_true or y_pred; 2-D labels are refused; one example is enough."""
    metric = Metric("accuracy", 3)
    assert metric.score([1], [1]) == 1.0
    with pytest.raises(ValueError, match=r"^y_true must be a non-empty 1-D array"):
        metric.score(np.array([0.0, 1.0]), [0, 1])
    with pytest.raises(ValueError, match=r"^y_pred must be a non-empty 1-D array"):
        metric.score([0, 1], np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"^y_true must be a non-empty 1-D array .* of shape \(2, 2\)"):
        metric.score(np.array([[0, 1], [1, 0]]), [0, 1])
    with pytest.raises(ValueError, match=r"^y_true must be"):
        metric.paired_gain(np.array([0.0, 1.0]), [[0, 1]], [[0, 1]])


# paired_gain


@pytest.mark.parametrize("name", [*METRICS, "cost"])
def test_gain_is_the_difference_of_seed_mean_scikit_learn_utilities(name: str) -> None:
    """With several seeds, an absent class and a one-example class: gain = mean u_a - mean u_b."""
    expected = (np.mean([_utility(name, Y, p) for p in A])
                - np.mean([_utility(name, Y, p) for p in B]))
    gain, _ = _metric(name).paired_gain(Y, A, B, method="bootstrap", n_boot=20)
    assert gain == pytest.approx(expected, abs=1e-12)


def _reference_bootstrap(t, a, b, n_boot, seed):
    """The paired bootstrap of accuracy, plainly: one resample of examples for every seed."""
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(t), len(t))
        gains.append(np.mean([skm.accuracy_score(t[idx], p[idx]) for p in a])
                     - np.mean([skm.accuracy_score(t[idx], p[idx]) for p in b]))
    return float(np.var(gains, ddof=1))


def _reference_flip_var(t, preds, seed, n_perm=50):
    """Mean over n_perm shuffles (rng seed + 1) of each example's predictions across seeds."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for _ in range(n_perm):
        order = np.argsort(rng.random(preds.shape), axis=0)
        shuffled = np.take_along_axis(preds, order, axis=0)
        out.append(np.var([skm.accuracy_score(t, p) for p in shuffled], ddof=1))
    return float(np.mean(out))


@pytest.mark.parametrize("n_boot", [2, 60])
def test_bootstrap_parts_equal_a_plain_reference(n_boot: int) -> None:
    """method='bootstrap' on accuracy: example, flip and seed terms as the reference computes."""
    rng = np.random.default_rng(5)
    t = rng.integers(0, 3, 40)
    # seeds of unequal skill: a seed term the flips do not explain, so each flip term shows
    a = np.stack([np.where(rng.random(40) < r, t, (t + 1) % 3) for r in (0.95, 0.55, 0.75)])
    b = np.stack([np.where(rng.random(40) < r, t, (t + 2) % 3) for r in (0.9, 0.5)])
    metric = Metric("accuracy", 3)
    parts = metric.paired_gain_parts(t, list(a), list(b), method="bootstrap", n_boot=n_boot, seed=4)
    example = _reference_bootstrap(t, a, b, n_boot, 4)
    assert parts["example_var"] == pytest.approx(example, rel=1e-9, abs=1e-15)
    flips = [_reference_flip_var(t, side, 4) for side in (a, b)]
    u = [np.array([skm.accuracy_score(t, p) for p in side]) for side in (a, b)]
    seed_vars = [max(0.0, float(np.var(us, ddof=1)) - f) / len(us) for us, f in zip(u, flips)]
    assert parts["seed_vars"] == pytest.approx(seed_vars, rel=1e-9, abs=1e-15)
    assert parts["seed_var"] == pytest.approx(sum(seed_vars), rel=1e-9, abs=1e-15)
    assert flips[0] > 0 and flips[1] > 0 and min(seed_vars) > 0
    assert parts["flip_var"] == pytest.approx(
        min(flips[0] / 3 + flips[1] / 2, example), rel=1e-9, abs=1e-15)
    assert parts["example_var"] != metric.paired_gain_parts(t, list(a), list(b))["example_var"]


def test_se_adds_the_seed_term_to_the_example_term() -> None:
    """se = sqrt(example term + seed term), by hand for a seed better everywhere."""
    y = np.array([0, 1, 0, 1])
    a, b = [np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])], [np.array([1, 1, 0, 0])]
    gain, se = Metric("accuracy", 2).paired_gain(y, a, b)
    # d = [.5, -.5, -.5, .5]: var 1/3, over 4: 1/12; a's seeds: (.5 - .5 / 4) / 2 = .1875
    assert gain == 0.0
    assert se == pytest.approx(math.sqrt(1 / 12 + 0.1875))
    parts = Metric("accuracy", 2).paired_gain_parts(y, a, b)
    assert parts["seed_vars"] == pytest.approx([0.1875, 0.0])


def test_defaults_are_2000_resamples_from_seed_0_and_reach_the_parts() -> None:
    """paired_gain(_parts) defaults: n_boot=2000, seed=0; paired_gain passes n_boot on."""
    f1 = Metric("macro_f1", 4)
    assert f1.paired_gain_parts(Y, A, B) == f1.paired_gain_parts(Y, A, B, n_boot=2000, seed=0)
    assert f1.paired_gain(Y, A, B) == f1.paired_gain(Y, A, B, n_boot=2000, seed=0)
    parts = f1.paired_gain_parts(Y, A, B, n_boot=50, seed=2)
    assert f1.paired_gain(Y, A, B, n_boot=50, seed=2) == (
        parts["gain"], math.sqrt(parts["example_var"] + parts["seed_var"]))


def test_two_seeds_give_a_flip_term_and_two_examples_a_standard_error() -> None:
    """Two seeds per side are enough for a flip term; two test examples for an SE."""
    parts = Metric("macro_f1", 4).paired_gain_parts(Y, A[:2], B, n_boot=20)
    assert parts["flip_var"] > 0
    gain, se = Metric("accuracy", 2).paired_gain([0, 1], [[0, 1]], [[0, 0]])
    # d = [0, 1]: var 0.5, over 2 examples: 0.25
    assert (gain, se) == (0.5, 0.5)


def test_one_seed_per_side_computes_without_numpy_warnings() -> None:
    """A single-seed side has no seed term and no flip term, and warns about nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parts = Metric("accuracy", 4).paired_gain_parts(Y, A[:1], B)
        assert parts["seed_vars"][0] == 0.0 and parts["seed_vars"][1] >= 0.0


def test_paired_gain_errors_name_the_bad_value() -> None:
    """method, n_boot, empty sides and too few examples are refused with the value."""
    accuracy = Metric("accuracy", 4)
    with pytest.raises(ValueError, match=r"method must be 'auto', 'analytic' or 'bootstrap', but got method='exact'\."):
        accuracy.paired_gain(Y, A, B, method="exact")
    with pytest.raises(ValueError, match=r"^preds_a and preds_b need at least one prediction vector each\.$"):
        accuracy.paired_gain(Y, A, [])
    with pytest.raises(ValueError, match=r"a standard error needs at least 2 test examples, but got 1\."):
        accuracy.paired_gain([0], [[0]], [[1]])
    with pytest.raises(ValueError, match=r"n_boot must be at least 2, but got n_boot=1\."):
        accuracy.paired_gain(Y, A, B, method="bootstrap", n_boot=1)


# Cost files and messages


def _costs(tmp_path, text: str, classes: list[str]) -> str:
    path = tmp_path / "costs.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        parse_metric(f"cost:{path}", classes)
    return str(err.value)


def test_a_labelled_grid_with_a_short_first_row_is_refused(tmp_path) -> None:
    """A labelled grid needs every row K + 1 cells wide, the first one too."""
    message = _costs(tmp_path, ",cat,dog\ncat,0\ndog,1,0\n", ["cat", "dog"])
    assert "has 3 rows of 2 to 3 cells" in message


def test_shape_messages_give_the_width_range_and_empty_files(tmp_path) -> None:
    """The message gives the narrowest to the widest row, or 0 cells for an empty file."""
    assert "has 3 rows of 1 to 3 cells" in _costs(tmp_path, "0\n1,0\n1,1,0\n", ["a", "b"])
    assert "has 0 rows of 0 cells" in _costs(tmp_path, "\n", ["a", "b"])


def test_cell_errors_in_a_labelled_grid_name_the_file(tmp_path) -> None:
    """A bad cell in a labelled grid is reported with the file, line and column."""
    message = _costs(tmp_path, ",a,b\na,0,x\nb,1,0\n", ["a", "b"])
    assert message.startswith(f"cost matrix {tmp_path / 'costs.csv'}: line 2, column 3 is 'x'")


def test_label_errors_give_the_index_range(tmp_path) -> None:
    """An unknown label names the class names and the indices 0..K-1."""
    message = _costs(tmp_path, ",a,c\na,0,1\nb,1,0\n", ["a", "b"])
    assert "use the class names (a, b) or the indices 0..1." in message


def test_six_class_names_are_listed_in_full(tmp_path) -> None:
    """Up to six class names are listed whole; more are shortened."""
    classes = [f"c{i}" for i in range(6)]
    assert "(c0, c1, c2, c3, c4, c5) need 6 x 6" in _costs(tmp_path, "0,1\n1,0\n", classes)


def test_undecodable_files_name_the_decoding_error(tmp_path) -> None:
    """A file that is not UTF-8 says so, naming the error type."""
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ConfigError, match=r"as a UTF-8 CSV file \(UnicodeDecodeError\)"):
        parse_metric(f"cost:{path}", ["a", "b"])


def test_unknown_metric_lists_the_choices_comma_separated() -> None:
    """The unknown-metric message lists every metric name, comma-separated."""
    with pytest.raises(ConfigError, match="use one of accuracy, balanced_accuracy, macro_f1, "
                       "worst_class_recall, or cost:FILE.csv"):
        parse_metric("f1", ["a", "b"])
