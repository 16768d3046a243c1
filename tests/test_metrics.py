"""Metrics: known answers against scikit-learn and by hand, the paired SE, cost-matrix files."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from sklearn import metrics as skm

import samtune.metrics
from samtune.errors import ConfigError
from samtune.metrics import METRICS, Metric, confusion, parse_metric, per_class_recall

K = 3
SKLEARN = {
    "accuracy": skm.accuracy_score,
    "balanced_accuracy": skm.balanced_accuracy_score,
    "macro_f1": lambda t, p: skm.f1_score(t, p, average="macro", labels=range(K), zero_division=0),
    "worst_class_recall": lambda t, p: skm.recall_score(
        t, p, average=None, labels=range(K), zero_division=0).min(),
}
# 10 examples: class 0 has 3 (2 right), class 1 has 2 (1 right), class 2 has 5 (4 right).
Y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
P = np.array([0, 0, 1, 1, 2, 2, 2, 2, 2, 0])
HAND = {
    "accuracy": 7 / 10,
    "balanced_accuracy": (2 / 3 + 1 / 2 + 4 / 5) / 3,
    # F1_k = 2 TP / (2 TP + FP + FN): class 0 4/6, class 1 2/4, class 2 8/10
    "macro_f1": (4 / 6 + 2 / 4 + 8 / 10) / 3,
    "worst_class_recall": 1 / 2,
}


def _cases():
    rng = np.random.default_rng(1)
    yield Y, P
    yield np.array([0, 0, 1, 1]), np.array([0, 2, 1, 2])  # class 2 predicted, never true
    yield np.array([2, 2, 2, 2]), np.array([2, 2, 2, 2])  # classes 0 and 1 absent
    for _ in range(5):
        yield rng.integers(0, K, 50), rng.integers(0, K, 50)


@pytest.mark.filterwarnings("ignore::UserWarning")  # balanced accuracy: predicted class never true
@pytest.mark.parametrize("name", METRICS)
def test_each_metric_equals_scikit_learn_and_the_hand_count(name):
    metric = Metric(name, num_classes=K)
    assert metric.score(Y, P) == pytest.approx(HAND[name])
    for t, p in _cases():
        assert metric.score(t, p) == pytest.approx(SKLEARN[name](t, p))
        assert metric.utility(t, p) == metric.score(t, p)
    assert metric.greater_is_better
    assert metric.decomposable == (name == "accuracy")


def test_torch_tensors_score_like_numpy_arrays():
    torch = pytest.importorskip("torch")
    for name in METRICS:
        metric = Metric(name, num_classes=K)
        assert metric.score(torch.tensor(Y), torch.tensor(P)) == metric.score(Y, P)


def test_cost_is_the_mean_cost_and_its_utility_the_negative(tmp_path):
    # rows true class, columns predicted: calling a 2 a 0 costs 5, every other mistake 1
    costs = np.array([[0, 1, 1], [1, 0, 1], [5, 1, 0]])
    metric = Metric("cost:/x/costs.csv", num_classes=K, cost_matrix=costs)
    # P's mistakes: 0->1 (1), 1->2 (1), 2->0 (5)
    assert metric.score(Y, P) == pytest.approx(7 / 10)
    assert metric.utility(Y, P) == pytest.approx(-7 / 10)
    assert not metric.greater_is_better and metric.decomposable
    assert metric.per_example(Y, P).tolist() == [0, 0, -1, 0, -1, 0, 0, 0, 0, -5]
    assert metric.describe() == "cost:costs.csv: mean misclassification cost (lower is better)"


def test_per_example_sums_to_n_times_the_score_and_exists_only_for_means():
    accuracy = Metric("accuracy", num_classes=K)
    assert accuracy.per_example(Y, P).sum() == pytest.approx(len(Y) * accuracy.score(Y, P))
    with pytest.raises(ValueError, match="not a mean over examples"):
        Metric("macro_f1", num_classes=K).per_example(Y, P)


def test_confusion_and_per_class_recall_equal_scikit_learn():
    for t, p in _cases():
        assert confusion(t, p, K) == skm.confusion_matrix(t, p, labels=range(K)).tolist()
        expected = skm.recall_score(t, p, average=None, labels=range(K), zero_division=0)
        assert per_class_recall(t, p, K) == pytest.approx(expected.tolist())
    assert per_class_recall(Y, P, K) == pytest.approx([2 / 3, 1 / 2, 4 / 5])


def test_accuracy_and_balanced_accuracy_can_prefer_different_predictions():
    y = np.array([0] * 63 + [1] * 37)
    # a: every 0 right, 10 of 37 ones; b: 40 of 63 zeros, 30 of 37 ones
    a = np.array([0] * 63 + [1] * 10 + [0] * 27)
    b = np.array([0] * 40 + [1] * 23 + [1] * 30 + [0] * 7)
    accuracy, balanced = Metric("accuracy", 2), Metric("balanced_accuracy", 2)
    assert accuracy.score(y, a) == pytest.approx(0.73)
    assert accuracy.score(y, b) == pytest.approx(0.70)
    assert balanced.score(y, a) < balanced.score(y, b)
    assert accuracy.paired_gain(y, [a], [b])[0] > 0 > balanced.paired_gain(y, [a], [b])[0]


def test_analytic_paired_se_equals_the_hand_computation():
    y = np.array([0, 1, 0, 1])
    a = [np.array([0, 1, 1, 1]), np.array([1, 1, 0, 0])]  # right: 1101 and 0110, accuracies .75 .5
    b = [np.array([1, 1, 0, 0])]  # right: 0110, accuracy .5
    gain, se = Metric("accuracy", 2).paired_gain(y, a, b)
    # d = mean right under a minus under b = [.5, 0, -.5, .5]: mean .125, squared deviations
    # sum to .6875; a's two seeds spread var([.75, .5]) = .03125, all of it (and more) the
    # flips of its examples (three of four flip: mean variance .375 / 4 = .09375), which d
    # already holds, so they add nothing; b has one seed
    assert gain == pytest.approx(0.125)
    assert se == pytest.approx(math.sqrt(0.6875 / 3 / 4))
    parts = Metric("accuracy", 2).paired_gain_parts(y, a, b)
    assert parts["seed_var"] == 0.0 and parts["flip_var"] == pytest.approx(0.09375 / 2)
    # a seed that is better everywhere: its spread is shared, and counts
    a = [np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])]  # right: all, then none
    parts = Metric("accuracy", 2).paired_gain_parts(y, a, b)
    assert parts["seed_var"] == pytest.approx((0.5 - 0.5 / 4) / 2)


def test_analytic_cost_se_uses_minus_the_costs():
    costs = np.array([[0, 1], [4, 0]])
    metric = Metric("cost:/c.csv", 2, costs)
    y, a, b = np.array([0, 1, 1]), np.array([1, 1, 0]), np.array([0, 0, 0])
    gain, se = metric.paired_gain(y, [a], [b])
    d = np.array([-1, 0, -4]) - np.array([0, -4, -4])  # minus the costs under a and under b
    assert gain == pytest.approx(d.mean())
    assert se == pytest.approx(math.sqrt(np.var(d, ddof=1) / 3))


def _seeded_predictions(rng, y, right, seeds):
    return [np.where(rng.random(len(y)) < right, y, (y + 1) % K) for _ in range(seeds)]


def test_bootstrap_se_of_accuracy_matches_the_analytic_se():
    rng = np.random.default_rng(0)
    y = rng.integers(0, K, 1500)
    a, b = _seeded_predictions(rng, y, 0.8, 3), _seeded_predictions(rng, y, 0.75, 2)
    accuracy = Metric("accuracy", K)
    gain, analytic = accuracy.paired_gain(y, a, b)
    boot_gain, boot = accuracy.paired_gain(y, a, b, method="bootstrap", n_boot=1000)
    assert boot_gain == gain
    assert boot == pytest.approx(analytic, rel=0.1)


def test_bootstrap_se_is_positive_deterministic_and_shrinks_with_more_examples():
    rng = np.random.default_rng(0)
    y = rng.integers(0, K, 300)
    a, b = _seeded_predictions(rng, y, 0.8, 1), _seeded_predictions(rng, y, 0.7, 1)
    f1 = Metric("macro_f1", K)
    gain, se = f1.paired_gain(y, a, b, n_boot=500, seed=3)
    assert se > 0
    assert f1.paired_gain(y, a, b, n_boot=500, seed=3) == (gain, se)
    assert f1.paired_gain(y, a, b, n_boot=500, seed=4)[1] != se
    # four copies of the test set: the same gain, and about half the SE
    big = [np.tile(v, 4) for v in (y, a[0], b[0])]
    big_gain, big_se = f1.paired_gain(big[0], [big[1]], [big[2]], n_boot=500)
    assert big_gain == pytest.approx(gain)
    assert 0.35 * se < big_se < 0.65 * se


def test_paired_gain_refuses_what_it_cannot_compute():
    accuracy = Metric("accuracy", K)
    with pytest.raises(ValueError, match="at least one prediction vector"):
        accuracy.paired_gain(Y, [], [P])
    with pytest.raises(ValueError, match="use method='bootstrap'"):
        Metric("macro_f1", K).paired_gain(Y, [P], [P], method="analytic")
    with pytest.raises(ValueError, match="equally long"):
        accuracy.paired_gain(Y, [P[:-1]], [P])


def test_bad_labels_are_refused():
    accuracy = Metric("accuracy", K)
    with pytest.raises(ValueError, match="class indices 0..2"):
        accuracy.score(Y, P + 1)
    with pytest.raises(ValueError, match="integer class indices"):
        accuracy.score(Y, P.astype(float))


def test_parse_metric_names_and_default():
    classes = ["cat", "dog", "bird"]
    assert parse_metric(None, classes) == Metric("accuracy", 3)
    for name in METRICS:
        metric = parse_metric(name, classes)
        assert metric.name == name and metric.num_classes == 3
        assert "\n" not in metric.describe()


# a 3 x 3 grid with rows and columns in the order bird, cat, dog
LABELLED = "true/pred,bird,cat,dog\ndog,2,1,0\nbird,0,3,4\ncat,5,0,6\n"
# the same costs in the classes' order cat, dog, bird
IN_ORDER = [[0, 6, 5], [1, 0, 2], [3, 4, 0]]


@pytest.mark.parametrize("text", [
    "0,6,5\n1,0,2\n3,4,0\n",
    LABELLED,
    LABELLED.replace("true/pred", ""),
    "bird,cat,dog\ndog,2,1,0\nbird,0,3,4\ncat,5,0,6\n",  # no top-left cell
    ",2,0,1\n1,2,1,0\n2,0,3,4\n0,5,0,6\n",  # indices instead of names
    "\ufeff0, 6, 5\r\n1,0,2\r\n\r\n3,4,0\r\n\n",  # BOM, CRLF, spaces, blank lines
])
def test_cost_csv_is_read_into_the_classes_order(tmp_path, text):
    path = tmp_path / "costs.csv"
    path.write_text(text, encoding="utf-8")
    metric = parse_metric(f"cost:{path}", ["cat", "dog", "bird"])
    assert metric.cost_matrix.tolist() == IN_ORDER
    assert metric.name == f"cost:{path.resolve()}"
    assert not metric.greater_is_better


@pytest.mark.parametrize(("text", "problem"), [
    (None, "cannot read"),
    ("0,1\n1,0\n", "has 2 rows of 2 cells, but the 3 classes (cat, dog, bird) need 3 x 3"),
    ("0,1,1\n1,0\n1,1,0\n", "has 3 rows of 2 to 3 cells"),
    ("0,1,1,1\n1,0,1,1\n1,1,0,1\n1,1,1,0\n", "has 4 rows of 4 cells"),
    (",cat,dog,cow\ncat,0,1,1\ndog,1,0,1\nbird,1,1,0\n", "label 'cow' in the header (line 1) is not a class"),
    (",cat,dog,bird\ncat,0,1,1\ndog,1,0,1\ncat,1,1,0\n", "label 'cat' appears twice in the first column"),
    (",cat,1,bird\ncat,0,1,1\ndog,1,0,1\nbird,1,1,0\n", "mixes class names and indices"),
    ("0,1,1\n1,zero,1\n1,1,0\n", "line 2, column 2 is 'zero', not a finite number"),
    ("0,1,1\n1,0,nan\n1,1,0\n", "line 2, column 3 is 'nan', not a finite number"),
    ("0,1,1\n1,0,1\n1,-2,0\n", "line 3, column 2 is -2, a negative cost"),
    ("0,0,0\n0,0,0\n0,0,0\n", "every cost is 0"),
    ("", "has 0 rows"),
])
def test_bad_cost_csv_fails_in_one_line_naming_the_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "costs.csv"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        parse_metric(f"cost:{path}", ["cat", "dog", "bird"])
    message = str(err.value)
    assert problem in message and str(path) in message
    assert "\n" not in message and "Traceback" not in message


def test_unreadable_cost_files_fail_in_one_line(tmp_path):
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81")
    for target, problem in [(tmp_path, "cannot read"), (tmp_path / "binary.csv", "UTF-8")]:
        with pytest.raises(ConfigError, match=problem) as err:
            parse_metric(f"cost:{target}", ["cat", "dog", "bird"])
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("spec", ["acc", "f1", "cost:", "cost: ", "Accuracy"])
def test_unknown_metric_fails_naming_the_value_and_the_choices(spec):
    with pytest.raises(ConfigError) as err:
        parse_metric(spec, ["cat", "dog"])
    message = str(err.value)
    assert repr(spec.strip()) in message
    assert "balanced_accuracy" in message and "cost:FILE.csv" in message
    assert "\n" not in message


def test_many_class_names_are_shortened_in_messages(tmp_path):
    path = tmp_path / "costs.csv"
    path.write_text("0,1\n1,0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c0, c1, c2, c3, c4, c5, \.\.\. \(20 in all\)"):
        parse_metric(f"cost:{path}", [f"c{i}" for i in range(20)])


def test_docstring_examples():
    assert doctest.testmod(samtune.metrics).failed == 0


@pytest.mark.parametrize("name", ["accuracy", "balanced_accuracy", "macro_f1", "worst_class_recall"])
def test_the_bootstraps_confusion_path_agrees_with_scikit_learns_scores(name):
    """``score`` is scikit-learn's; the bootstrap rescores from confusion matrices: the same."""
    from samtune.metrics import _confusion

    rng = np.random.default_rng(7)
    metric = Metric(name, 4)
    for _ in range(20):
        t = rng.integers(0, 4, 60)
        p = np.where(rng.random(60) < 0.6, t, rng.integers(0, 4, 60))
        fast = metric._from_confusion(_confusion(t, p[None], 4))[0]
        assert fast == pytest.approx(metric.score(t, p))
