"""Fit a model's confidence calibration on the validation split, after model selection and never on test.

* Temperature scaling (Guo et al. 2017): one temperature divides the expression logits; it is the value that
  minimises the validation negative log-likelihood. It rescales every face's logits alike, so the most probable
  class never changes, and accuracy neither.
* Split conformal prediction (Vovk; Angelopoulos & Bates 2021) on the calibrated probabilities: the
  ``ceil((n + 1) q) / n`` empirical quantile of a score on the n validation faces gives sets (classes) and
  intervals (V/A) that hold the true value with probability at least ``q`` on new exchangeable faces.
  - Classes use adaptive prediction sets (APS, Romano et al. 2020) without randomisation: a set adds classes in
    order of probability until their mass reaches the threshold, so an unsure face gets a longer list. RAPS
    would add a size penalty with two more settings to tune on held-out data; with 8 classes the long tail it
    cuts is short, so APS keeps the validation split for the one threshold.
  - Valence and arousal use the absolute error: the model predicts no spread, so the intervals have a constant
    half-width per dimension.
  These are a few lines of arithmetic on stored numbers, applied by ``head_outputs`` in PyTorch and inside the
  exported ONNX graph alike, which a library's fitted predictor object (mapie, torchcp, crepes) could not be.

When the split is too small for the coverage (``ceil((n + 1) q) > n``) the quantile is infinite: every class is
in the set (threshold 2, above any APS score) and the interval spans the whole V/A range (half-width 2).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from affectlab.labels import VA_RANGE
from affectlab.models.meta import Calibration
from affectlab.models.outputs import RawOutputs, aps_scores, head_outputs

__all__ = ["conformal_quantile", "fit_calibration", "fit_temperature"]

#: The temperature is searched in [1/20, 20], in log space.
_LOG_T_BOUNDS = (-math.log(20.0), math.log(20.0))
#: Above every APS score (at most 1) and V/A error (at most the range's width): "no finite quantile".
_UNBOUNDED = 2.0


def fit_temperature(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels`` under ``softmax(logits / T)``.

    A bounded scalar search on log T (the likelihood has a single minimum in T): a validation split that the
    model gets entirely right has no finite optimum, and the bound keeps T from running to 0.
    """
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if z.ndim != 2 or y.shape != (z.shape[0],) or len(y) == 0:
        raise ValueError(f"fit_temperature needs (N, C) logits and N labels, got {tuple(z.shape)} and {tuple(y.shape)}")

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(z / math.exp(log_t), y))

    found = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(math.exp(found.x))


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The split-conformal threshold: the ``ceil((n + 1) coverage)``-th smallest of n calibration scores."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((len(scores) + 1) * coverage)
    return _UNBOUNDED if rank > len(scores) else float(scores[rank - 1])


def fit_calibration(raw: RawOutputs, expression: np.ndarray, va: np.ndarray, coverage: float) -> Calibration:
    """Temperature, APS threshold and V/A half-widths from the validation split's raw heads and labels.

    Faces without an expression label (-1) or without V/A (NaN) are left out of the part that needs them.
    """
    temperature = threshold = halfwidth = None
    counts = [0]
    if "expression" in raw:
        labelled = np.asarray(expression) >= 0
        if labelled.any():
            logits, y = raw["expression"][torch.from_numpy(labelled)], expression[labelled]
            temperature = fit_temperature(logits, y)
            probs = head_outputs({"expression": logits}, Calibration(temperature=temperature))["probs"]
            true_scores = aps_scores(probs)[torch.arange(len(y)), torch.as_tensor(y, dtype=torch.long)]
            threshold = conformal_quantile(true_scores.numpy(), coverage)
            counts.append(int(labelled.sum()))
    if "va" in raw:
        known = ~np.isnan(np.asarray(va)).any(axis=1)
        if known.any():
            point = head_outputs({"va": raw["va"]})["va"].numpy()  # the clipped point the intervals centre on
            errors = np.abs(point[known] - va[known])
            width = VA_RANGE[1] - VA_RANGE[0]
            v, a = (min(conformal_quantile(errors[:, d], coverage), width) for d in (0, 1))
            halfwidth = (v, a)
            counts.append(int(known.sum()))
    return Calibration(
        temperature=temperature,
        coverage=coverage,
        set_threshold=threshold,
        va_halfwidth=halfwidth,
        n=max(counts),
    )
