"""The figures of one evaluated run: confusion matrix, circumplex, reliability diagram, a 40-image qualitative
grid, and the score under camera damage when the evaluation measured it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from affectlab.data.samples import FaceSplit
from affectlab.labels import EMOTIONS
from affectlab.models.outputs import Outputs
from affectlab.reports.plots import (
    plot_circumplex,
    plot_confusion_matrix,
    plot_qualitative_grid,
    plot_reliability,
    plot_robustness,
    select_qualitative,
)

__all__ = ["FIGURE_NAMES", "write_evaluation_figures"]

FIGURE_NAMES = {
    "curves": "training_curves.png",
    "confusion": "confusion_matrix.png",
    "circumplex": "valence_arousal.png",
    "grid": "qualitative.png",
    "robustness": "robustness.png",
    "reliability": "reliability.png",
}


def _caption(i: int, outputs: Outputs, split: FaceSplit) -> str:
    lines = []
    if "probs" in outputs:
        lines.append(f"T: {EMOTIONS[split.expression[i]]}  P: {EMOTIONS[int(outputs['probs'][i].argmax())]}")
    elif split.expression[i] >= 0:
        lines.append(f"T: {EMOTIONS[split.expression[i]]}")
    if "va" in outputs:
        (tv, ta), (pv, pa) = split.va[i], outputs["va"][i]
        lines.append(f"V {tv:+.2f}/{pv:+.2f}  A {ta:+.2f}/{pa:+.2f}")
    return "\n".join(lines)


def write_evaluation_figures(
    out_dir: str | Path,
    metrics: dict[str, Any],
    outputs: Outputs,
    split: FaceSplit,
    title: str = "",
    n_grid: int = 40,
    uncalibrated: Outputs | None = None,
) -> dict[str, Path]:
    """The figures of ``metrics``; the reliability diagram shows ``uncalibrated`` next to ``outputs`` when the
    two differ (a model with a temperature)."""
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    if "classification" in metrics:
        written["confusion"] = plot_confusion_matrix(
            metrics["classification"]["confusion"], EMOTIONS, out_dir / FIGURE_NAMES["confusion"], title=title
        )
        curves = {"model": outputs["probs"]}
        if uncalibrated is not None and not np.array_equal(uncalibrated["probs"], outputs["probs"]):
            curves = {"before": uncalibrated["probs"], "after temperature": outputs["probs"]}
        written["reliability"] = plot_reliability(
            split.expression, curves, out_dir / FIGURE_NAMES["reliability"], title=title
        )
        correct = outputs["probs"].argmax(1) == split.expression
    else:
        # Regression only: a face counts as right when both signs (the circumplex quadrant) agree.
        correct = (np.sign(outputs["va"]) == np.sign(split.va)).all(1)
    if "valence" in metrics:
        written["circumplex"] = plot_circumplex(
            split.va, outputs["va"], out_dir / FIGURE_NAMES["circumplex"], title=title
        )
    if "robustness" in metrics:
        written["robustness"] = plot_robustness(
            metrics["robustness"], out_dir / FIGURE_NAMES["robustness"], title=title
        )
    chosen = select_qualitative(correct, n=n_grid, seed=0)
    written["grid"] = plot_qualitative_grid(
        [split.images[i] for i in chosen],
        [_caption(i, outputs, split) for i in chosen],
        [bool(correct[i]) for i in chosen],
        out_dir / FIGURE_NAMES["grid"],
        title=f"{title}: green = correct, red = wrong"
        if "classification" in metrics
        else f"{title}: green = V/A quadrant right",
    )
    return written
