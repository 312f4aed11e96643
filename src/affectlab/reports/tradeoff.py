"""Accuracy against speed against size: the study's trade-off, as data, as a figure and as one sentence.

The data is built from the study's summary by a pure function (:func:`tradeoff_panels`), and the figure is
drawn from that data alone (:func:`plot_tradeoff`), so a test can check the points and the Pareto set without
looking at pixels, and ``summary.json`` stores exactly what the figure shows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from affectlab.reports.plots import _save

__all__ = ["TradeoffPanel", "TradeoffPoint", "pareto_front", "plot_tradeoff", "tradeoff_panels", "tradeoff_sentence"]

#: Runtimes in order of preference for the speed axis: the one a deployment would use first.
RUNTIMES = ("onnxruntime", "pytorch_eager")
RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "pytorch_eager": "PyTorch eager"}
#: Panels: (task section of the metrics, what is plotted on the y axis).
PANEL_METRICS = {"classification": "accuracy", "regression": "mean CCC (valence, arousal)"}
_MAX_AREA = 1600.0  # marker area in points^2 of the largest model; areas are proportional to checkpoint size


@dataclass(frozen=True)
class TradeoffPoint:
    """One model: its score, its throughput at batch 32 and its checkpoint size."""

    label: str
    score: float
    faces_per_s: float
    size_mb: float
    params: int


@dataclass(frozen=True)
class TradeoffPanel:
    """The models scored on one metric, the ones no other beats on both axes, and the sentence that says it."""

    task: str
    metric: str
    runtime: str
    points: list[TradeoffPoint]
    pareto: list[str] = field(default_factory=list)
    sentence: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pareto_front(points: Sequence[TradeoffPoint]) -> list[TradeoffPoint]:
    """The points that no other point beats on both score and speed (at least as good on both, better on one).

    Returned in order of increasing speed, the order the Pareto line joins them.
    """

    def beaten(p: TradeoffPoint) -> bool:
        return any(
            q.score >= p.score
            and q.faces_per_s >= p.faces_per_s
            and (q.score > p.score or q.faces_per_s > p.faces_per_s)
            for q in points
        )

    return sorted((p for p in points if not beaten(p)), key=lambda p: (p.faces_per_s, p.score))


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×"


def tradeoff_sentence(points: Sequence[TradeoffPoint], metric: str) -> str:
    """One sentence from the numbers: the fastest model against the most accurate (or, if it is both, the next).

    For example: "mobilenet_v2 is 6.2× faster and 6.5× smaller than vgg16, and 16.1 points more accurate".
    """
    if not points:
        return ""
    if len(points) == 1:
        return f"Only {points[0].label} was measured."
    fastest = max(points, key=lambda p: (p.faces_per_s, p.score))
    best = max(points, key=lambda p: (p.score, p.faces_per_s))
    ref = best if best is not fastest else max((p for p in points if p is not fastest), key=lambda p: p.score)
    size_ratio = ref.size_mb / fastest.size_mb
    if 0.95 <= size_ratio <= 1.05:
        comparison = f"faster than {ref.label} at the same size"
    elif size_ratio > 1:
        comparison = f"faster and {size_ratio:.1f}× smaller than {ref.label}"
    else:
        comparison = f"faster but {1 / size_ratio:.1f}× larger than {ref.label}"
    delta = fastest.score - ref.score
    if metric == "accuracy":
        amount = f"{abs(delta) * 100:.1f} points {'more' if delta >= 0 else 'less'} accurate"
        values = f"accuracy {fastest.score:.3f} vs {ref.score:.3f}"
    else:
        amount = f"{abs(delta):.3f} {'higher' if delta >= 0 else 'lower'} in mean CCC"
        values = f"mean CCC {fastest.score:.3f} vs {ref.score:.3f}"
    sentence = (
        f"{fastest.label} is {_ratio(fastest.faces_per_s, ref.faces_per_s)} {comparison}, "
        f"{'and' if delta >= 0 else 'but'} {amount} ({values})"
    )
    if len(points) > 2:
        front = ", ".join(p.label for p in pareto_front(points))
        sentence += f"; on the Pareto front (no model beats them on both axes): {front}"
    return sentence + "."


def _label(run: dict[str, Any]) -> str:
    weights = run["weights"]
    suffix = "" if weights == "imagenet" else " (random init)" if weights == "none" else " (own weights)"
    return f"{run['backbone']}{suffix}"


def _score(metrics: dict[str, Any], task: str) -> float | None:
    if task == "classification":
        return metrics.get("classification", {}).get("accuracy")
    cccs = [metrics.get(dim, {}).get("ccc") for dim in ("valence", "arousal")]
    return float(np.mean(cccs)) if cccs and None not in cccs else None


def tradeoff_panels(summary: dict[str, Any]) -> list[TradeoffPanel]:
    """One panel per task kind (accuracy for classification, mean V/A CCC for regression), from ``summary``.

    Each point is one model, its numbers averaged over seeds; the speed axis is batch-32 throughput in ONNX
    Runtime where every model of the panel was exported, else in PyTorch eager.
    """
    panels = []
    for task, metric in PANEL_METRICS.items():
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for run in summary.get("runs", []):
            if "efficiency" in run and _score(run["metrics"], task) is not None:
                groups.setdefault((run["backbone"], run["task"], run["weights"]), []).append(run)
        if not groups:
            continue
        runs = [r for members in groups.values() for r in members]
        runtime = next(rt for rt in RUNTIMES if all(rt in r["efficiency"]["speed"] for r in runs))
        points = []
        for members in groups.values():
            effs = [m["efficiency"] for m in members]
            label = _label(members[0]) + (f", {members[0]['task']}" if members[0]["task"] == "multitask" else "")
            points.append(
                TradeoffPoint(
                    label=label,
                    score=float(np.mean([_score(m["metrics"], task) for m in members])),
                    faces_per_s=float(np.mean([e["speed"][runtime]["batch32"]["faces_per_s"] for e in effs])),
                    size_mb=float(np.mean([e["checkpoint_mb"] for e in effs])),
                    params=int(effs[0]["params"]["total"]),
                )
            )
        front = pareto_front(points)
        panels.append(
            TradeoffPanel(task, metric, runtime, points, [p.label for p in front], tradeoff_sentence(points, metric))
        )
    return panels


def plot_tradeoff(panels: Sequence[TradeoffPanel], out_path: str | os.PathLike[str]) -> Path:
    """Score against faces/s, one point per model, marker area proportional to checkpoint size, Pareto line."""
    fig = Figure(figsize=(5.5 * max(1, len(panels)), 4.6), layout="constrained")
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    largest = max((p.size_mb for panel in panels for p in panel.points), default=1.0) or 1.0
    for ax, panel in zip(axes, panels):
        xs = np.array([p.faces_per_s for p in panel.points])
        ys = np.array([p.score for p in panel.points])
        areas = np.array([p.size_mb for p in panel.points]) / largest * _MAX_AREA
        ax.scatter(xs, ys, s=areas, alpha=0.55, color="#1f77b4", edgecolors="#0b3c5d", zorder=3)
        front = [p for label in panel.pareto for p in panel.points if p.label == label]
        if len(front) > 1:
            fx, fy = [p.faces_per_s for p in front], [p.score for p in front]
            ax.plot(fx, fy, "--", color="#d62728", lw=1.5, zorder=2, label="Pareto front")
        elif len(panel.points) > 1:  # one model beats all others on both axes: ring it
            best = front[0]
            ring = best.size_mb / largest * _MAX_AREA * 1.6
            ax.scatter(
                [best.faces_per_s],
                [best.score],
                s=ring,
                facecolors="none",
                edgecolors="#d62728",
                lw=1.5,
                zorder=4,
                label="Pareto front: best on both axes",
            )
        for p, area in zip(panel.points, areas):
            ax.annotate(
                f"{p.label}\n{p.size_mb:.1f} MB, {p.params / 1e6:.1f} M params",
                (p.faces_per_s, p.score),
                textcoords="offset points",
                xytext=(0, np.sqrt(area / np.pi) + 8),  # above the marker, whatever its size
                ha="center",
                fontsize=8,
            )
        if xs.max() / max(xs.min(), 1e-9) > 10:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 10, 100, not 10^0
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.25, y=0.3)
        ax.set_xlabel(f"faces/s, batch 32, {RUNTIME_NAMES[panel.runtime]} (higher is faster)")
        ax.set_ylabel(f"{panel.metric} (test split)")
        ax.set_title(f"{panel.task}: marker area ∝ checkpoint size", fontsize=10)
        ax.grid(alpha=0.3)
        if len(panel.points) > 1:
            ax.legend(loc="lower right", fontsize=8, markerscale=0.4)
    if not panels:
        axes[0].text(0.5, 0.5, "no model was measured", ha="center", va="center", transform=axes[0].transAxes)
    return _save(fig, out_path)
