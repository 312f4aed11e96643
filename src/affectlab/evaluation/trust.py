"""How far the model's confidence can be trusted: the ``confidence`` section of metrics.json.

* Calibration: negative log-likelihood, Brier score (squared error of the probability vector, summed over
  classes), expected calibration error of the top probability (15 equal-width bins, torchmetrics'
  ``CalibrationError``) and classwise ECE (the same error for each class's probability against its one-vs-rest
  label, averaged over classes), before and after the temperature. Beside the ECE, ``ece_floor``: the ECE that a
  perfectly calibrated model with the same probabilities would measure on as many faces (labels drawn from the
  probabilities themselves). ECE is biased upwards on a few hundred faces (on 600 test faces the floor is about
  .05), so an ECE near its floor is as calibrated as this test split can tell.
* Selective prediction: keep only the most confident faces; the accuracy at 50%, 80% and 100% coverage and the
  area under the risk-coverage curve (mean error over every coverage from 1 face to all; lower is better).
* Conformal sets and intervals: the share of faces whose true class is in their set and whose true V/A is in its
  interval, with the mean set size and interval width, next to the target.
* Under shift (camera damage, faces in scenes, another dataset): ``shift_metrics`` gives the same ECE and
  coverages of the outputs users get there, and ``clean_shift_metrics`` reads them back from a ``confidence``
  section, so a report sets the two side by side.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from affectlab.models.meta import Calibration
from affectlab.models.outputs import Outputs

__all__ = [
    "ECE_BINS",
    "SHIFT_METRICS",
    "clean_shift_metrics",
    "confidence_metrics",
    "confidence_section",
    "ece_floor",
    "expected_calibration_error",
    "format_confidence",
    "interval_metrics",
    "selective_metrics",
    "set_metrics",
    "shift_metrics",
]

ECE_BINS = 15
#: Coverages at which selective accuracy is reported.
SELECTIVE_COVERAGES = (0.5, 0.8, 1.0)


#: What ``shift_metrics`` reports: ECE of the top probability, coverage and mean size of the prediction sets,
#: coverage of the valence and arousal intervals (each only where the model and the labels have it).
SHIFT_METRICS = ("ece", "set_coverage", "set_size", "valence_coverage", "arousal_coverage")


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray) -> float:
    """ECE of the top probability (N x C probabilities, N labels), ``ECE_BINS`` equal-width bins."""
    p = torch.as_tensor(np.asarray(probs, dtype=np.float64)).float()
    y = torch.as_tensor(np.asarray(y_true), dtype=torch.long)
    return float(multiclass_calibration_error(p, y, p.shape[1], n_bins=ECE_BINS, norm="l1"))


def ece_floor(probs: np.ndarray, draws: int = 100, seed: int = 0) -> float:
    """Mean ECE of a perfectly calibrated model: labels drawn from ``probs`` (N x C) themselves, ``draws`` times."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    cumulative = np.cumsum(p, axis=1)
    cumulative[:, -1] = 1.0
    rng = np.random.default_rng(seed)
    errors = []
    for _ in range(draws):
        labels = (rng.random((len(p), 1)) > cumulative).sum(axis=1)
        errors.append(expected_calibration_error(labels, p))
    return float(np.mean(errors))


def confidence_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """NLL, Brier, ECE, classwise ECE and selective accuracy of probabilities (N x C) for labels (N,)."""
    p = torch.as_tensor(np.asarray(probs, dtype=np.float64))
    y = torch.as_tensor(np.asarray(y_true), dtype=torch.long)
    n, classes = p.shape
    true_p = p[torch.arange(n), y]
    onehot = torch.nn.functional.one_hot(y, classes).double()
    classwise = [binary_calibration_error(p[:, c].float(), (y == c).long(), n_bins=ECE_BINS) for c in range(classes)]
    result = {
        "nll": float(-torch.log(true_p.clamp_min(1e-12)).mean()),
        "brier": float(((p - onehot) ** 2).sum(dim=1).mean()),
        "ece": expected_calibration_error(y_true, probs),
        "ece_floor": ece_floor(probs),
        "classwise_ece": float(torch.stack(classwise).mean()),
    }
    return result | selective_metrics(p.max(dim=1).values.numpy(), (p.argmax(dim=1) == y).numpy())


def selective_metrics(confidence: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    """Accuracy of the most confident faces at each of ``SELECTIVE_COVERAGES``, and the area under the
    risk-coverage curve (ties in confidence are broken by input order)."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    hits = np.cumsum(np.asarray(correct, dtype=np.float64)[order])
    kept = np.arange(1, len(hits) + 1)
    result = {f"accuracy_at_{round(c * 100)}": float(hits[math.ceil(c * len(hits)) - 1] / math.ceil(c * len(hits)))
              for c in SELECTIVE_COVERAGES}  # fmt: skip
    result["aurc"] = float(np.mean(1 - hits / kept))
    return result


def set_metrics(y_true: np.ndarray, sets: np.ndarray) -> dict[str, float]:
    """Share of faces whose true class is in their prediction set (N x C, bool), and the mean set size."""
    sets = np.asarray(sets, dtype=bool)
    return {
        "coverage": float(sets[np.arange(len(sets)), np.asarray(y_true)].mean()),
        "mean_size": float(sets.sum(axis=1).mean()),
    }


def interval_metrics(va_true: np.ndarray, intervals: np.ndarray) -> dict[str, dict[str, float]]:
    """Per dimension, the share of true values inside ``[low, high]`` (N x 2 x 2) and the mean width."""
    result = {}
    for d, name in enumerate(("valence", "arousal")):
        low, high = intervals[:, d, 0], intervals[:, d, 1]
        inside = (va_true[:, d] >= low) & (va_true[:, d] <= high)
        result[name] = {"coverage": float(inside.mean()), "mean_width": float((high - low).mean())}
    return result


def confidence_section(
    before: Outputs, after: Outputs, y_true: np.ndarray | None, va_true: np.ndarray | None, cal: Calibration | None
) -> dict[str, Any]:
    """The ``confidence`` section: calibration before and after the temperature, sets and intervals.

    ``before`` are the outputs without calibration, ``after`` with it (the same when the model has none);
    ``y_true``/``va_true`` are None when the data or the model lacks them.
    """
    cal = cal or Calibration()
    section: dict[str, Any] = {
        "temperature": cal.temperature,
        "target_coverage": cal.coverage,
        "calibrated_on": "val" if cal.n else None,
        "calibration_n": cal.n or None,
    }
    if y_true is not None and "probs" in before:
        section["before"] = confidence_metrics(y_true, before["probs"])
        section["after"] = None if cal.temperature is None else confidence_metrics(y_true, after["probs"])
        section["sets"] = None if "set" not in after else {"method": cal.set_method} | set_metrics(y_true, after["set"])
    if va_true is not None and "va_interval" in after:
        section["intervals"] = interval_metrics(va_true, after["va_interval"])
    return section


def shift_metrics(outputs: Outputs, y_true: np.ndarray | None, va_true: np.ndarray | None) -> dict[str, float]:
    """``SHIFT_METRICS`` of ``outputs`` (the probabilities users get: calibrated where the model has a
    temperature; its sets and intervals) against the labels given (None: not scored)."""
    result: dict[str, float] = {}
    if y_true is not None and "probs" in outputs:
        result["ece"] = expected_calibration_error(y_true, outputs["probs"])
        if "set" in outputs:
            sets = set_metrics(y_true, outputs["set"])
            result["set_coverage"], result["set_size"] = sets["coverage"], sets["mean_size"]
    if va_true is not None and "va_interval" in outputs:
        intervals = interval_metrics(va_true, outputs["va_interval"])
        result["valence_coverage"] = intervals["valence"]["coverage"]
        result["arousal_coverage"] = intervals["arousal"]["coverage"]
    return result


def clean_shift_metrics(section: dict[str, Any] | None) -> dict[str, float]:
    """``SHIFT_METRICS`` read from a ``confidence`` section (the clean split's): the ECE after the temperature
    (before it, for a model without one: what its users get), the set and interval coverages."""
    if not section:
        return {}
    result: dict[str, float] = {}
    scored = section.get("after") or section.get("before")
    if scored is not None:
        result["ece"] = scored["ece"]
    if section.get("sets"):
        result["set_coverage"], result["set_size"] = section["sets"]["coverage"], section["sets"]["mean_size"]
    if section.get("intervals"):
        result["valence_coverage"] = section["intervals"]["valence"]["coverage"]
        result["arousal_coverage"] = section["intervals"]["arousal"]["coverage"]
    return result


def format_confidence(section: dict[str, Any] | None) -> str:
    """The ``confidence`` section in a few lines for the terminal (empty when there is nothing to say)."""
    if not section:
        return ""
    lines = []
    before, after = section.get("before"), section.get("after")
    if before is not None:
        pairs = [(name, before[key], None if after is None else after[key])
                 for name, key in (("ECE", "ece"), ("NLL", "nll"), ("Brier", "brier"), ("classwise ECE", "classwise_ece"))]  # fmt: skip
        arrow = [f"{name} {b:.3f}" + ("" if a is None else f" -> {a:.3f}") for name, b, a in pairs]
        shown = after or before
        temperature = section.get("temperature")
        lead = f"calibration (T = {temperature:.3f}, fitted on val): " if temperature is not None else "calibration: "
        lines.append(lead + ", ".join(arrow))
        if "ece_floor" in shown:
            lines.append(
                f"a perfectly calibrated model would measure ECE {shown['ece_floor']:.3f} on these faces "
                "(ECE is biased upwards on few faces)"
            )
        lines.append(
            f"selective accuracy: {shown['accuracy_at_50']:.3f} at 50% coverage, {shown['accuracy_at_80']:.3f} at 80%,"
            f" {shown['accuracy_at_100']:.3f} at 100%; AURC {shown['aurc']:.3f}"
        )
    target = section.get("target_coverage")
    aim = "" if target is None else f" (target {target:.2f})"
    if section.get("sets"):
        sets = section["sets"]
        lines.append(
            f"{sets['method'].upper()} sets{aim}: coverage {sets['coverage']:.3f}, mean size {sets['mean_size']:.2f}"
        )
    if section.get("intervals"):
        parts = [
            f"{k} coverage {v['coverage']:.3f} width {v['mean_width']:.3f}" for k, v in section["intervals"].items()
        ]
        lines.append(f"V/A intervals{aim}: " + "; ".join(parts))
    return "\n".join(lines)
