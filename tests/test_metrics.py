"""Tests for affectlab.evaluation.metrics: hand-computed values, edge cases and strict-JSON output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from affectlab.evaluation.metrics import (
    ccc,
    classification_metrics,
    regression_metrics,
    sagr,
    va_metrics,
)
from affectlab.labels import EMOTIONS
from affectlab.training.losses import ccc_loss


def _one_hot_probs(pred: list[int], n_classes: int, confidence: float = 0.9) -> np.ndarray:
    probs = np.full((len(pred), n_classes), (1.0 - confidence) / (n_classes - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def _assert_strict_json(obj: object) -> None:
    json.dumps(obj, allow_nan=False)


# ---------------------------------------------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------------------------------------------


def test_sagr_hand_computed() -> None:
    # signs: true + - + -, pred + + - -  -> agree at positions 0 and 3 -> 2/4
    assert sagr(np.array([0.5, -0.2, 0.1, -0.7]), np.array([0.3, 0.4, -0.1, -0.2])) == pytest.approx(0.5)


def test_sagr_zero_matches_only_zero() -> None:
    # np.sign(0) == 0: a 0 label agrees with a 0 prediction only.
    assert sagr(np.array([0.0, 0.0, 0.4]), np.array([0.0, 0.1, 0.0])) == pytest.approx(1 / 3)


def test_ccc_hand_computed_uses_population_statistics() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([2.0, 3.0, 4.0, 5.0])
    # means 2.5 and 3.5; deviations -1.5 -0.5 0.5 1.5 for both
    var_y = (1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 4  # 1.25 (divide by N)
    var_p = var_y
    cov = var_y  # identical deviations
    expected = 2 * cov / (var_y + var_p + (2.5 - 3.5) ** 2)  # 2.5 / 3.5
    assert expected == pytest.approx(0.7142857142857143)
    assert ccc(y, p) == pytest.approx(expected)
    m = regression_metrics(y, p)
    assert m["ccc"] == pytest.approx(expected)
    assert m["rmse"] == pytest.approx(1.0)
    assert m["corr"] == pytest.approx(1.0)
    assert m["sagr"] == pytest.approx(1.0)


def test_perfect_prediction() -> None:
    y = np.array([-0.8, -0.1, 0.3, 0.9, 0.5])
    m = regression_metrics(y, y.copy())
    assert m == pytest.approx({"rmse": 0.0, "corr": 1.0, "sagr": 1.0, "ccc": 1.0})


def test_anti_correlated() -> None:
    y = np.array([-0.6, -0.2, 0.2, 0.6])
    m = regression_metrics(y, -y)
    assert m["corr"] == pytest.approx(-1.0)
    assert m["ccc"] == pytest.approx(-1.0)  # zero means, equal variances: 2*(-v)/(2v)
    assert m["sagr"] == pytest.approx(0.0)
    assert m["rmse"] == pytest.approx(math.sqrt(np.mean((2 * y) ** 2)))


def test_constant_prediction_gives_none_corr_and_zero_ccc() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    m = regression_metrics(y, np.full(4, 2.0))
    assert m["corr"] is None
    assert m["ccc"] == 0.0
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 1 + 4) / 4))
    _assert_strict_json(m)


def test_both_constant_and_equal_ccc_undefined() -> None:
    m = regression_metrics(np.full(3, 0.2), np.full(3, 0.2))
    assert m["ccc"] is None and m["corr"] is None
    assert m["rmse"] == 0.0 and m["sagr"] == 1.0
    _assert_strict_json(m)


def test_regression_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        regression_metrics(np.array([1.0, 2.0]), np.array([1.0]))
    with pytest.raises(ValueError):
        regression_metrics(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        regression_metrics(np.array([]), np.array([]))


def test_va_metrics_splits_columns() -> None:
    # Valence column: p = t + 1 (CCC 2.5/3.5, see above); arousal column: p = -t. Values by hand.
    t = np.array([[1.0, -0.6], [2.0, -0.2], [3.0, 0.2], [4.0, 0.6]])
    p = np.array([[2.0, 0.6], [3.0, 0.2], [4.0, -0.2], [5.0, -0.6]])
    m = va_metrics(t, p)
    assert m["valence"] == pytest.approx({"rmse": 1.0, "corr": 1.0, "sagr": 1.0, "ccc": 2.5 / 3.5})
    assert m["arousal"] == pytest.approx({"rmse": math.sqrt(0.8), "corr": -1.0, "sagr": 0.0, "ccc": -1.0})
    _assert_strict_json(m)
    with pytest.raises(ValueError):
        va_metrics(t[:, :1], p[:, :1])


def test_ccc_loss_equals_one_minus_ccc_and_has_gradients() -> None:
    rng = np.random.default_rng(1)
    t = rng.uniform(-1, 1, (32, 2))
    p = 0.5 * t + rng.normal(0, 0.3, (32, 2))
    pred = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    target = torch.tensor(t, dtype=torch.float64)
    loss = ccc_loss(pred, target)
    expected = 1.0 - (ccc(t[:, 0], p[:, 0]) + ccc(t[:, 1], p[:, 1])) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_ccc_loss_perfect_and_constant_batch() -> None:
    t = torch.tensor([[0.1, -0.3], [0.5, 0.2], [-0.4, 0.8]])
    assert ccc_loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-5)
    pred = torch.zeros(3, 2, requires_grad=True)  # constant batch: eps keeps it finite
    loss = ccc_loss(pred, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()


# ---------------------------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------------------------


def test_perfect_classification() -> None:
    y = np.array([0, 1, 2, 3, 4, 5, 6, 7, 1, 1, 0])
    m = classification_metrics(y, _one_hot_probs(y.tolist(), 8), EMOTIONS)
    assert m["accuracy"] == 1.0
    assert m["cohen_kappa"] == pytest.approx(1.0)
    assert m["auc_ovr"] == pytest.approx(1.0)
    assert m["f1_macro"] == pytest.approx(1.0) and m["f1_weighted"] == pytest.approx(1.0)
    assert np.array_equal(np.diag(m["confusion"]), np.bincount(y, minlength=8))
    assert all(v["auc"] == pytest.approx(1.0) for v in m["per_class"].values())
    _assert_strict_json(m)


def test_known_confusion_matrix() -> None:
    names = ["a", "b", "c"]
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(y, _one_hot_probs(pred, 3), names)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    a = m["per_class"]["a"]
    assert a["precision"] == pytest.approx(1.0) and a["recall"] == pytest.approx(2 / 3) and a["support"] == 3
    b = m["per_class"]["b"]
    assert b["precision"] == pytest.approx(0.5) and b["recall"] == pytest.approx(0.5)
    assert b["f1"] == pytest.approx(0.5)
    c = m["per_class"]["c"]
    assert c["precision"] == pytest.approx(0.5) and c["recall"] == pytest.approx(1.0)
    assert c["f1"] == pytest.approx(2 / 3)
    # kappa by hand: po = 4/6; pe = sum(row_i * col_i) / N^2 = (3*2 + 2*2 + 1*2) / 36 = 12/36
    po, pe = 4 / 6, 12 / 36
    assert m["cohen_kappa"] == pytest.approx((po - pe) / (1 - pe))


def test_f1_kappa_and_auc_with_tied_scores_by_hand() -> None:
    names = ["a", "b", "c"]
    y = np.array([0, 0, 1, 1, 2, 2, 0])
    probs = np.array(
        [
            [0.5, 0.3, 0.2],  # a, predicted a
            [0.3, 0.5, 0.2],  # a, predicted b
            [0.3, 0.6, 0.1],  # b, predicted b
            [0.5, 0.2, 0.3],  # b, predicted a
            [0.2, 0.2, 0.6],  # c, predicted c
            [0.1, 0.5, 0.4],  # c, predicted b
            [0.7, 0.2, 0.1],  # a, predicted a
        ]
    )
    m = classification_metrics(y, probs, names)
    assert m["confusion"] == [[2, 1, 0], [1, 1, 0], [0, 1, 1]]
    assert m["accuracy"] == pytest.approx(4 / 7)
    # F1 per class: a P 2/3 R 2/3 -> 2/3; b P 1/3 R 1/2 -> 0.4; c P 1 R 1/2 -> 2/3. Supports 3, 2, 2.
    assert [m["per_class"][n]["f1"] for n in names] == pytest.approx([2 / 3, 0.4, 2 / 3])
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0.4 + 2 / 3) / 3)
    assert m["f1_weighted"] == pytest.approx((3 * 2 / 3 + 2 * 0.4 + 2 * 2 / 3) / 7)
    # kappa: po = 4/7; true counts 3, 2, 2 and predicted counts 3, 3, 1 -> pe = (9 + 6 + 2) / 49
    assert m["cohen_kappa"] == pytest.approx((4 / 7 - 17 / 49) / (1 - 17 / 49))  # 11/32
    # One-vs-rest AUC = P(positive scores above negative) + 1/2 P(tie), over all positive x negative pairs:
    #   a: positives .5 .3 .7 against .3 .5 .2 .1 -> 3.5 + 2.5 + 4 = 10 of 12 (two ties)
    #   b: positives .6 .2 against .3 .5 .2 .5 .2 -> 5 + 1 = 6 of 10 (two ties)
    #   c: positives .6 .4 against .2 .2 .1 .3 .1 -> 10 of 10
    aucs = [10 / 12, 6 / 10, 1.0]
    assert [m["per_class"][n]["auc"] for n in names] == pytest.approx(aucs)
    assert m["auc_ovr"] == pytest.approx(np.mean(aucs))
    assert isinstance(m["accuracy"], float) and isinstance(m["confusion"][0][0], int)
    _assert_strict_json(m)


def test_macro_f1_averages_over_the_classes_present() -> None:
    # Classes 0-2 occur; class 3 (Surprise) never does but is predicted once; 4-7 neither occur nor are predicted.
    y = np.array([0, 0, 1, 1, 1, 2])
    m = classification_metrics(y, _one_hot_probs([0, 3, 1, 1, 0, 2], 8), EMOTIONS)
    # F1: Neutral P 1/2 R 1/2 -> .5; Happy P 1 R 2/3 -> .8; Sad 1.0. The absent class is not averaged in
    # (sklearn's own default would average over the 4 labels seen in y or predictions: 2.3 / 4).
    assert m["f1_macro"] == pytest.approx((0.5 + 0.8 + 1.0) / 3)
    assert m["f1_weighted"] == pytest.approx((2 * 0.5 + 3 * 0.8 + 1 * 1.0) / 6)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["Surprise"] == {"precision": 0.0, "recall": None, "f1": None, "support": 0, "auc": None}
    # The wrong prediction into the absent class still costs: Neutral's recall is 1/2.
    assert m["per_class"]["Neutral"]["recall"] == pytest.approx(0.5)


def test_absent_class_gives_none_not_nan() -> None:
    y = np.array([0, 1, 1, 2, 0, 2])  # classes 3..7 absent
    probs = _one_hot_probs([0, 1, 3, 2, 0, 1], 8)  # one prediction goes to absent class 3
    m = classification_metrics(y, probs, EMOTIONS)
    _assert_strict_json(m)
    surprise = m["per_class"]["Surprise"]
    assert surprise["support"] == 0 and surprise["auc"] is None and surprise["recall"] is None
    assert surprise["precision"] == 0.0  # predicted once, never right
    assert m["per_class"]["Contempt"]["precision"] is None  # never true, never predicted
    present_aucs = [m["per_class"][n]["auc"] for n in ("Neutral", "Happy", "Sad")]
    assert all(a is not None for a in present_aucs)
    assert m["auc_ovr"] == pytest.approx(np.mean(present_aucs))


def test_single_class_present() -> None:
    y = np.zeros(4, dtype=int)
    m = classification_metrics(y, _one_hot_probs([0, 0, 0, 0], 8), EMOTIONS)
    assert m["accuracy"] == 1.0
    assert m["auc_ovr"] is None and m["cohen_kappa"] is None
    _assert_strict_json(m)


def test_classification_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 1]), np.ones((2, 3)) / 3, EMOTIONS)  # C mismatch
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 9]), np.ones((2, 8)) / 8, EMOTIONS)  # label out of range
