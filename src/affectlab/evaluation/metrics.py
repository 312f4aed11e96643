"""Evaluation metrics for facial affect: 8-class expression and valence/arousal regression.

Every number in a report has to mean the same thing as the number in the AffectNet papers it is compared
with, and has to survive ``json.dumps(..., allow_nan=False)`` so that ``metrics.json`` is always valid JSON.
Hence the rules followed throughout this module:

* Library implementations are used wherever one computes exactly the metric we report: scikit-learn for
  accuracy, F1, Cohen's kappa, ROC AUC, precision/recall, the confusion matrix and RMSE; torchmetrics for
  Pearson's correlation.
* CCC is computed here, in float64, because torchmetrics' ``concordance_corrcoef`` uses *sample* (n - 1)
  variances and covariance while the mean-difference term stays unscaled, which is not the population
  definition used by AffectNet/AVEC (for ``y=[1,2,3,4]``, ``p=[2,3,4,5]`` torchmetrics gives 0.769, the
  population formula 0.714), and it returns NaN instead of 0 when the predictions are constant.
* SAGR (sign agreement) exists in neither library and is written by hand, as are the two crowd-vote scores of
  ``vote_metrics`` (cross-entropy to a vote distribution, agreement with the top vote).
* A value that is mathematically undefined (a correlation with a constant series, an AUC for a class that
  never occurs) is ``None``, never NaN; all other values are plain Python ``float``/``int``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    root_mean_squared_error,
)
from torchmetrics.functional import pearson_corrcoef

from affectlab.data.votes import vote_distribution

__all__ = [
    "ccc",
    "classification_metrics",
    "regression_metrics",
    "sagr",
    "va_metrics",
    "vote_metrics",
]


def _clean(value: float | np.floating[Any] | None) -> float | None:
    """Return a plain float, or ``None`` for missing/NaN/inf values, so results stay strict-JSON serialisable."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------------------


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Score expression predictions with the metrics AffectNet papers report, plus per-class detail.

    Accuracy alone hides the class imbalance of AffectNet (Happy dominates, Contempt is rare), so weighted and
    macro F1, Cohen's kappa (agreement beyond chance) and one-vs-rest ROC AUC (ranking quality of the
    probabilities, independent of the argmax threshold) are reported alongside it.

    Macro-averaged numbers (``f1_macro``, ``auc_ovr``) average over the classes that occur in ``y_true``: a class
    with no true samples has no recall and no AUC, and counting it as 0 would punish the model for the test
    set's composition. Predictions *into* such a class are still penalised, through the recall of the true
    classes. For a class absent from ``y_true``, per-class ``recall``, ``f1`` and ``auc`` are ``None``;
    ``precision`` is ``None`` when the class is also never predicted (0/0) and 0.0 otherwise.

    Args:
        y_true: Integer class indices, shape (N,), values in ``[0, C)``.
        probs: Softmax probabilities, shape (N, C); the prediction is the arg-max of each row.
        class_names: C class names, in index order (normally ``affectlab.labels.EMOTIONS``).

    Returns:
        ``{"accuracy", "f1_weighted", "f1_macro", "cohen_kappa", "auc_ovr", "per_class", "confusion"}`` where
        ``per_class`` maps each name to ``{"precision", "recall", "f1", "support", "auc"}`` and ``confusion``
        is a C x C list of int lists (rows = true class, columns = predicted class). Undefined values are
        ``None``: ``cohen_kappa`` when agreement expected by chance is total (one class only),
        ``auc_ovr`` when fewer than two classes occur in ``y_true``.

    Raises:
        ValueError: On mismatched shapes, an empty input, labels outside ``[0, C)`` or non-finite
            probabilities.
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    names = list(class_names)
    n_classes = len(names)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise ValueError(f"probs must have shape (N, {n_classes}), got {probs.shape}")
    if y_true.ndim != 1 or y_true.shape[0] != probs.shape[0]:
        raise ValueError(f"y_true must have shape ({probs.shape[0]},), got {y_true.shape}")
    if y_true.size == 0:
        raise ValueError("classification_metrics needs at least one sample")
    if not np.issubdtype(y_true.dtype, np.integer):
        if not np.all(np.equal(np.mod(y_true, 1), 0)):
            raise ValueError("y_true must contain integer class indices")
        y_true = y_true.astype(np.int64)
    if y_true.min() < 0 or y_true.max() >= n_classes:
        raise ValueError(f"y_true values must lie in [0, {n_classes}), got [{y_true.min()}, {y_true.max()}]")
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contains NaN or inf")

    labels = list(range(n_classes))
    y_pred = probs.argmax(axis=1)
    present = sorted(int(c) for c in np.unique(y_true))

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0.0
    )
    predicted_counts = np.bincount(y_pred, minlength=n_classes)

    per_class: dict[str, dict[str, Any]] = {}
    aucs: list[float] = []
    for c, name in enumerate(names):
        has_true = support[c] > 0
        auc: float | None = None
        # A binary AUC needs both positives and negatives; with a single class in y_true there are no negatives.
        if has_true and len(present) >= 2:
            auc = _clean(roc_auc_score(y_true == c, probs[:, c]))
            if auc is not None:
                aucs.append(auc)
        per_class[name] = {
            "precision": _clean(precision[c]) if (has_true or predicted_counts[c] > 0) else None,
            "recall": _clean(recall[c]) if has_true else None,
            "f1": _clean(f1[c]) if has_true else None,
            "support": int(support[c]),
            "auc": auc,
        }

    # sklearn returns NaN (with a warning) for kappa when chance agreement is 1; map that to None quietly.
    if len(np.union1d(y_true, y_pred)) < 2:
        kappa: float | None = None
    else:
        kappa = _clean(cohen_kappa_score(y_true, y_pred, labels=labels))

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_weighted": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0.0)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0.0)),
        "cohen_kappa": kappa,
        "auc_ovr": float(np.mean(aucs)) if len(present) >= 2 and aucs else None,
        "per_class": per_class,
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).astype(int).tolist(),
    }


# --------------------------------------------------------------------------------------------------------------
# Valence / arousal regression
# --------------------------------------------------------------------------------------------------------------


def _as_1d_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {t.shape} and {p.shape}")
    if t.size == 0:
        raise ValueError("regression metrics need at least one sample")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise ValueError("y_true or y_pred contains NaN or inf")
    return t, p


def sagr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Sign agreement (SAGR): the fraction of samples whose prediction has the same sign as the label.

    SAGR is reported for AffectNet valence/arousal because the sign (pleasant vs unpleasant, calm vs
    excited) matters more to users than the exact magnitude, and RMSE does not show whether the model gets
    it right. Neither scikit-learn nor torchmetrics implements it.

    Signs are compared with ``np.sign``, which maps 0 to 0: an exact 0 agrees only with an exact 0 (a
    prediction of 0 for a positive label counts as wrong). This is the literal ``sign(y) == sign(p)``
    definition used in the AffectNet paper (Mollahosseini et al., 2017).

    Args:
        y_true: Labels, shape (N,).
        y_pred: Predictions, shape (N,).

    Returns:
        SAGR in [0, 1].
    """
    t, p = _as_1d_pair(y_true, y_pred)
    return float(np.mean(np.sign(t) == np.sign(p)))


def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Lin's concordance correlation coefficient with population (biased, divide-by-N) statistics.

    ``ccc = 2 cov(t, p) / (var(t) + var(p) + (mean(t) - mean(p))**2)``, the definition used by AVEC and the
    AffectNet papers. Unlike Pearson's r it also penalises bias and scale errors, so it is the headline
    metric for valence/arousal. Written here rather than taken from torchmetrics because
    ``torchmetrics.functional.concordance_corrcoef`` uses sample (n - 1) variance/covariance with an unscaled
    mean-difference term (a different, slightly larger value on small sets) and returns NaN, not 0, for
    constant predictions.

    Args:
        y_true: Labels, shape (N,).
        y_pred: Predictions, shape (N,).

    Returns:
        CCC in [-1, 1]; 0.0 when exactly one of the series is constant (no covariance); ``None`` when the
        value is 0/0, i.e. both series are the same constant.
    """
    t, p = _as_1d_pair(y_true, y_pred)
    if np.ptp(t) == 0.0 or np.ptp(p) == 0.0:
        # Covariance is exactly 0; decide here because float round-off in mean() would leave tiny nonzero
        # variances (e.g. 0.2 repeated) and turn 0/0 into an arbitrary number.
        return 0.0 if t[0] != p[0] or np.ptp(t) != np.ptp(p) else None
    mu_t, mu_p = t.mean(), p.mean()
    var_t, var_p = t.var(), p.var()  # ddof=0: population variance
    cov = np.mean((t - mu_t) * (p - mu_p))
    denom = var_t + var_p + (mu_t - mu_p) ** 2
    if denom <= 0.0:
        return None
    return _clean(2.0 * cov / denom)


def _pearson(t: np.ndarray, p: np.ndarray) -> float | None:
    # Pearson's r is undefined for a constant series (or a single sample); torchmetrics would warn and give NaN.
    if t.size < 2 or np.ptp(t) == 0.0 or np.ptp(p) == 0.0:
        return None
    return _clean(pearson_corrcoef(torch.from_numpy(p), torch.from_numpy(t)).item())


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    """Score one affect dimension (valence or arousal) the way AffectNet papers do.

    Four complementary numbers: RMSE (magnitude of error), Pearson's r (linear association, blind to bias),
    SAGR (is the sign right) and CCC (agreement, penalising bias and scale).

    Args:
        y_true: Labels for one dimension, shape (N,), normally in [-1, 1].
        y_pred: Predictions, shape (N,).

    Returns:
        ``{"rmse", "corr", "sagr", "ccc"}``. ``corr`` is ``None`` when either series is constant or N < 2;
        ``ccc`` is ``None`` only when both series are the same constant (0/0). RMSE comes from scikit-learn,
        Pearson's r from torchmetrics, SAGR and CCC from this module (see :func:`sagr`, :func:`ccc`).

    Raises:
        ValueError: On mismatched or non-1-D shapes, an empty input or non-finite values.
    """
    t, p = _as_1d_pair(y_true, y_pred)
    return {
        "rmse": float(root_mean_squared_error(t, p)),
        "corr": _pearson(t, p),
        "sagr": sagr(t, p),
        "ccc": ccc(t, p),
    }


def va_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, float | None]]:
    """Score valence and arousal separately, because models typically do much better on valence.

    Args:
        y_true: Labels, shape (N, 2), columns (valence, arousal).
        y_pred: Predictions, shape (N, 2).

    Returns:
        ``{"valence": regression_metrics(...), "arousal": regression_metrics(...)}``.

    Raises:
        ValueError: If either array is not (N, 2) or the shapes differ.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 2 or t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must both have shape (N, 2), got {t.shape} and {p.shape}")
    return {
        "valence": regression_metrics(t[:, 0], p[:, 0]),
        "arousal": regression_metrics(t[:, 1], p[:, 1]),
    }


def vote_metrics(votes: np.ndarray, probs: np.ndarray) -> dict[str, float | int | None]:
    """How predictions agree with a crowd (FER+), beside the majority-vote accuracy of ``classification_metrics``.

    * ``vote_cross_entropy``: mean over faces of ``-sum_c q_c log p_c``, ``q`` the face's vote distribution over the
      eight emotions (unknown and NF votes dropped, renormalised): the loss of FER+'s "probability" mode, lower is
      better, 0 only for a model that reproduces the crowd's shares exactly. ``p`` is clipped at float64's eps.
    * ``top_vote_agreement``: the share of faces whose predicted class is a top-voted one (for a tie, any of the
      tied classes), over every face with votes, ties included.

    Args:
        votes: (N, 10) vote counts, ``data.votes.VOTE_COLUMNS`` (or (N, 8) emotion counts); rows without an
            emotion vote are left out.
        probs: (N, 8) predicted class probabilities.
    """
    counts = np.asarray(votes, dtype=np.float64)
    if counts.shape[1] == probs.shape[1]:
        counts = np.concatenate([counts, np.zeros((len(counts), 2))], axis=1)
    q = vote_distribution(counts).astype(np.float64)
    keep = q.sum(axis=1) > 0
    q, p = q[keep], np.asarray(probs, dtype=np.float64)[keep]
    if not len(q):
        return {"n": 0, "vote_cross_entropy": None, "top_vote_agreement": None}
    cross_entropy = -(q * np.log(np.clip(p, np.finfo(np.float64).eps, 1.0))).sum(axis=1).mean()
    predicted = p.argmax(axis=1)
    top = q == q.max(axis=1, keepdims=True)
    return {
        "n": int(len(q)),
        "vote_cross_entropy": float(cross_entropy),
        "top_vote_agreement": float(top[np.arange(len(q)), predicted].mean()),
    }
