"""Matplotlib figures for training and evaluation reports.

Every function builds its own :class:`matplotlib.figure.Figure` (no ``pyplot``), so no global state leaks
between calls, no display or backend selection is needed (``Figure.savefig`` renders with the Agg canvas),
and figures can be made from worker threads or headless servers. Each figure is written atomically with
:func:`affectlab.atomic.atomic_write`, so an interrupted run never leaves a truncated PNG in a report, and
the function returns the final path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from affectlab.atomic import atomic_write

__all__ = [
    "plot_circumplex",
    "plot_confusion_matrix",
    "plot_qualitative_grid",
    "plot_robustness",
    "plot_training_curves",
    "select_qualitative",
]

DPI = 120
_CORRECT_COLOUR = "#2ca02c"
_WRONG_COLOUR = "#d62728"
_UNKNOWN_COLOUR = "#7f7f7f"
_TRUE_COLOUR = "#1f77b4"
_PRED_COLOUR = "#ff7f0e"


def _save(fig: Figure, out_path: str | os.PathLike[str]) -> Path:
    # The temporary file ends in .tmp, so the format has to be given explicitly.
    return atomic_write(out_path, lambda p: fig.savefig(p, format="png", dpi=DPI))


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """Epochs and values for ``key``, skipping epochs where it is missing, None or non-finite."""
    xs: list[float] = []
    ys: list[float] = []
    for i, row in enumerate(history):
        value = row.get(key)
        if value is None:
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(value):
            continue
        epoch = row.get("epoch")
        xs.append(float(epoch) if epoch is not None else float(i))
        ys.append(value)
    return xs, ys


def _no_data(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=_UNKNOWN_COLOUR)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_training_curves(
    history: Sequence[Mapping[str, Any]],
    out_path: str | os.PathLike[str],
    monitor: str = "val_loss",
    best_epoch: int | None = None,
) -> Path:
    """Plot loss and validation-metric curves per epoch, to see convergence and over-fitting at a glance.

    The left panel shows training vs validation loss; the right panel shows whichever validation metrics
    are present (accuracy for classification, RMSE for valence/arousal regression; both for multi-task).
    The epoch whose weights were restored is marked with a dashed vertical line on both panels, named by the
    run's own ``monitor``: ``best_epoch`` when the training reports it, else the best epoch of ``monitor`` in
    the history (lowest loss, highest accuracy, CCC or score).

    Args:
        history: One dict per epoch with keys among ``epoch``, ``train_loss``, ``val_loss``,
            ``val_accuracy``, ``val_rmse_valence``, ``val_rmse_arousal``. Missing or ``None`` values are
            skipped; a missing ``epoch`` falls back to the row index.
        out_path: Where to write the PNG.
        monitor: The validation metric the run selected on (``TrainConfig.monitor``).
        best_epoch: The restored epoch (1-based), as the training reports it.

    Returns:
        The path of the written PNG.
    """
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax_loss, ax_metric = fig.subplots(1, 2)

    # Left: losses.
    any_loss = False
    for key, label, colour in (("train_loss", "train", _TRUE_COLOUR), ("val_loss", "validation", _PRED_COLOUR)):
        xs, ys = _series(history, key)
        if xs:
            any_loss = True
            ax_loss.plot(xs, ys, marker="o", markersize=3, label=f"{label} loss", color=colour)
    if best_epoch is None:
        monitor_x, monitor_y = _series(history, monitor)
        if monitor_y:
            best = int(np.argmin(monitor_y) if monitor == "val_loss" else np.argmax(monitor_y))
            best_epoch = int(monitor_x[best])
    ax_loss.set_title("Loss")
    if any_loss:
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("loss")
        ax_loss.grid(alpha=0.3)
    else:
        _no_data(ax_loss, "no loss recorded")

    # Right: validation metrics; accuracy and RMSE live on different scales, so RMSE gets a twin axis if both.
    acc_x, acc_y = _series(history, "val_accuracy")
    rmse = {name: _series(history, f"val_rmse_{name}") for name in ("valence", "arousal")}
    has_rmse = any(xs for xs, _ in rmse.values())
    handles: list[Any] = []
    if acc_x:
        handles += ax_metric.plot(acc_x, acc_y, marker="o", markersize=3, color=_CORRECT_COLOUR, label="accuracy")
        ax_metric.set_ylabel("validation accuracy")
    rmse_ax = ax_metric.twinx() if (acc_x and has_rmse) else ax_metric
    for (name, (xs, ys)), style in zip(rmse.items(), ("-", "--"), strict=True):
        if xs:
            handles += rmse_ax.plot(
                xs,
                ys,
                marker="s",
                markersize=3,
                linestyle=style,
                color="#9467bd" if name == "valence" else "#8c564b",
                label=f"RMSE {name}",
            )
    if has_rmse:
        rmse_ax.set_ylabel("validation RMSE (lower is better)")
    if handles:
        ax_metric.set_xlabel("epoch")
        ax_metric.grid(alpha=0.3)
        ax_metric.set_title("Validation metrics")
    else:
        ax_metric.set_title("Validation metrics")
        _no_data(ax_metric, "no validation metrics recorded")

    if best_epoch is not None:
        best_line = None
        for ax, has_data in ((ax_loss, any_loss), (ax_metric, bool(handles))):
            if not has_data:
                continue
            best_line = ax.axvline(
                best_epoch,
                color="black",
                linestyle="--",
                linewidth=1,
                alpha=0.7,
                label=f"restored: best {monitor} (epoch {best_epoch})",
            )
        if best_line is not None and handles:
            handles.append(best_line)
    if any_loss:
        ax_loss.legend(loc="best", fontsize="small")
    if handles:
        legend_kw: dict[str, Any] = {"loc": "best"}
        if rmse_ax is not ax_metric:
            # "best" only avoids the lines of one of the twin axes; put the legend under the panel instead.
            legend_kw = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.14), "ncol": min(len(handles), 4)}
        ax_metric.legend(handles=handles, labels=[h.get_label() for h in handles], fontsize="small", **legend_kw)
    for ax in (ax_loss, ax_metric):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("Training curves")
    return _save(fig, out_path)


def plot_confusion_matrix(
    confusion: Sequence[Sequence[int]],
    class_names: Sequence[str],
    out_path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """Plot a row-normalised confusion matrix, so per-class recall is readable despite class imbalance.

    Raw counts would be dominated by the frequent classes (Happy, Neutral on AffectNet); normalising each
    row shows where each true class goes. Every cell carries its percentage and, smaller, its raw count so
    that tiny classes are not over-interpreted.

    Args:
        confusion: C x C counts, rows = true class, columns = predicted class.
        class_names: The C class names, in index order.
        out_path: Where to write the PNG.
        title: Figure title; defaults to "Confusion matrix (row-normalised)".

    Returns:
        The path of the written PNG.

    Raises:
        ValueError: If ``confusion`` is not square or does not match ``class_names``.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    names = list(class_names)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(names):
        raise ValueError(f"confusion must be {len(names)}x{len(names)}, got shape {counts.shape}")
    row_sums = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, row_sums, out=np.zeros(counts.shape, dtype=np.float64), where=row_sums > 0)

    n = len(names)
    size = max(5.0, 0.75 * n + 1.5)
    # "compressed" is the constrained layout for fixed-aspect axes; plain "constrained" mis-places the y label
    # of an imshow + colorbar figure (it can end up off the canvas).
    fig = Figure(figsize=(size + 1.0, size), layout="compressed")
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    cbar = fig.colorbar(im, ax=ax, shrink=0.9)
    cbar.set_label("fraction of true class (recall)")
    ax.set_xticks(range(n), labels=names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels=[f"{name} ({int(s)})" for name, s in zip(names, row_sums[:, 0], strict=True)])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (support)")
    for i in range(n):
        for j in range(n):
            colour = "white" if norm[i, j] > 0.5 else "black"
            if row_sums[i, 0] == 0:
                ax.text(j, i, "–", ha="center", va="center", color=_UNKNOWN_COLOUR, fontsize=8)
                continue
            ax.text(j, i - 0.12, f"{100 * norm[i, j]:.0f}%", ha="center", va="center", color=colour, fontsize=9)
            ax.text(j, i + 0.22, f"{counts[i, j]}", ha="center", va="center", color=colour, fontsize=6.5, alpha=0.85)
    total = int(counts.sum())
    acc = float(np.trace(counts) / total) if total else float("nan")
    ax.set_title(title or "Confusion matrix (row-normalised)")
    if total:
        fig.supxlabel(f"N = {total}, accuracy = {acc:.1%}", fontsize="small")
    return _save(fig, out_path)


def _identity_panel(ax: Any, t: np.ndarray, p: np.ndarray, name: str, alpha: float) -> None:
    ax.scatter(t, p, s=8, alpha=alpha, color=_TRUE_COLOUR, edgecolors="none")
    ax.plot([-1.05, 1.05], [-1.05, 1.05], color="black", linestyle="--", linewidth=1, label="identity (p = t)")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect("equal")
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel(f"predicted {name}")
    if t.size:
        rmse = float(np.sqrt(np.mean((t - p) ** 2)))
        ax.set_title(f"{name.capitalize()} (RMSE {rmse:.3f})")
    else:
        ax.set_title(name.capitalize())
    ax.legend(loc="upper left", fontsize="x-small")
    ax.grid(alpha=0.3)


def plot_circumplex(
    true_va: np.ndarray,
    pred_va: np.ndarray,
    out_path: str | os.PathLike[str],
    title: str = "",
    max_links: int = 100,
    max_points: int = 400,
    seed: int = 0,
) -> Path:
    """Plot valence/arousal predictions against labels and in Russell's circumplex plane.

    The first two panels (predicted vs true per dimension, with the identity line) show bias and range
    compression, the usual failure of regression heads (predictions collapse toward 0). The third panel
    places true and predicted points in the valence-arousal plane with the unit circle, for at most
    ``max_points`` samples (a fixed random subset, so the cloud stays readable), and links up to ``max_links``
    of those pairs with thin lines so the direction of errors is visible.

    Args:
        true_va: Labels, shape (N, 2), columns (valence, arousal), in [-1, 1].
        pred_va: Predictions, shape (N, 2).
        out_path: Where to write the PNG.
        title: Figure title; defaults to "Valence / arousal".
        max_links: Largest number of true-to-predicted links drawn in the circumplex panel.
        max_points: Largest number of samples drawn in the circumplex panel (the scatter panels show all).
        seed: Seed for choosing the shown and linked subsets (deterministic output).

    Returns:
        The path of the written PNG.

    Raises:
        ValueError: If the arrays are not both (N, 2).
    """
    t = np.asarray(true_va, dtype=np.float64)
    p = np.asarray(pred_va, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 2 or t.shape != p.shape:
        raise ValueError(f"true_va and pred_va must both have shape (N, 2), got {t.shape} and {p.shape}")
    n = t.shape[0]
    alpha = float(np.clip(30.0 / math.sqrt(max(n, 1)), 0.15, 0.8))

    fig = Figure(figsize=(15, 5.4), layout="compressed")
    ax_v, ax_a, ax_c = fig.subplots(1, 3)
    _identity_panel(ax_v, t[:, 0], p[:, 0], "valence", alpha)
    _identity_panel(ax_a, t[:, 1], p[:, 1], "arousal", alpha)

    theta = np.linspace(0.0, 2.0 * np.pi, 361)
    ax_c.plot(np.cos(theta), np.sin(theta), color="grey", linewidth=1)
    ax_c.axhline(0, color="grey", linewidth=0.8)
    ax_c.axvline(0, color="grey", linewidth=0.8)
    # Thousands of overlapping pairs turn the plane into a blob: show a fixed random subset, link fewer still.
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(n, size=min(n, max_points), replace=False)) if n else np.zeros(0, dtype=np.int64)
    linked = shown
    if shown.size > max_links:
        linked = np.sort(rng.choice(shown, size=max(0, max_links), replace=False))
    if linked.size:
        segments = list(np.stack([t[linked], p[linked]], axis=1))
        ax_c.add_collection(LineCollection(segments, colors=[to_rgba("grey", 0.5)], linewidths=0.6, zorder=1))
    plane_alpha = float(np.clip(20.0 / math.sqrt(max(shown.size, 1)), 0.35, 0.9))
    ax_c.scatter(
        t[shown, 0], t[shown, 1], s=12, alpha=plane_alpha, color=_TRUE_COLOUR, edgecolors="none", label="true", zorder=2
    )
    ax_c.scatter(
        p[shown, 0],
        p[shown, 1],
        s=12,
        alpha=plane_alpha,
        color=_PRED_COLOUR,
        edgecolors="none",
        label="predicted",
        zorder=3,
    )
    label_box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}
    for x, y, text, ha, va in (
        (1.03, -0.03, "pleasant", "right", "top"),
        (-1.03, -0.03, "unpleasant", "left", "top"),
        (0.03, 1.03, "excited", "left", "top"),
        (0.03, -1.03, "calm", "left", "bottom"),
    ):
        ax_c.text(x, y, text, ha=ha, va=va, fontsize=7, color="dimgrey", bbox=label_box, zorder=4)
    ax_c.set_xlim(-1.05, 1.05)
    ax_c.set_ylim(-1.05, 1.05)
    ax_c.set_aspect("equal")
    ax_c.set_xlabel("valence")
    ax_c.set_ylabel("arousal")
    if n:
        subset = f"{shown.size} of {n} shown, " if shown.size < n else ""
        ax_c.set_title(f"Circumplex ({subset}{linked.size} pairs linked)")
    else:
        ax_c.set_title("Circumplex")
    legend = ax_c.legend(loc="lower left", fontsize="x-small", markerscale=1.5)
    for handle in legend.legend_handles:
        if handle is not None:
            handle.set_alpha(1.0)
    fig.suptitle(title or f"Valence / arousal (N = {n})")
    return _save(fig, out_path)


def plot_qualitative_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    correct: Sequence[bool | None],
    out_path: str | os.PathLike[str],
    ncols: int = 8,
    title: str = "",
) -> Path:
    """Show example faces with their labels and predictions, framed green (correct), red (wrong) or grey.

    Numbers hide *what kind* of faces fail; a grid of examples (see :func:`select_qualitative` for a
    balanced pick) shows it immediately. Captions are drawn under each face and may span several lines,
    e.g. ``"T: Happy  P: Sad\\nV .52/.31  A .10/.22"``.

    Args:
        images: RGB uint8 images, each (H, W, 3) (grayscale (H, W) is also accepted); sizes may differ.
        titles: One caption per image.
        correct: Per image ``True`` (green), ``False`` (red) or ``None`` (grey, e.g. regression only).
        out_path: Where to write the PNG.
        ncols: Images per row.
        title: Figure title.

    Returns:
        The path of the written PNG.

    Raises:
        ValueError: If the three sequences differ in length or ``ncols`` < 1.
    """
    if not (len(images) == len(titles) == len(correct)):
        raise ValueError(f"images, titles and correct differ in length: {len(images)}, {len(titles)}, {len(correct)}")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    n = len(images)
    cols = max(1, min(ncols, n))
    rows = max(1, math.ceil(n / cols))
    lines = [line for t in titles for line in str(t).split("\n")] or [""]
    max_lines = max(str(t).count("\n") + 1 for t in titles) if n else 1
    longest = max(len(line) for line in lines)
    cell_w = 1.9
    # Shrink the caption font so the longest line fits its cell (~0.62 em per character; DejaVu digits: 0.64 em).
    caption_size = float(np.clip(cell_w * 72.0 / (0.62 * max(longest, 1)), 5.5, 8.0))
    cell_h = cell_w + (caption_size / 72.0) * 1.35 * max_lines + 0.1
    fig = Figure(figsize=(cols * cell_w, rows * cell_h + (0.45 if title else 0.1)), layout="compressed")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.axis("off")
            continue
        img = np.asarray(images[i])
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="antialiased")
        flag = correct[i]
        colour = _UNKNOWN_COLOUR if flag is None else (_CORRECT_COLOUR if flag else _WRONG_COLOUR)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(3)
        ax.set_xlabel(str(titles[i]), color=colour, fontsize=caption_size, labelpad=2, linespacing=1.2)
    if n == 0:
        _no_data(axes[0], "no examples")
    if title:
        fig.suptitle(title)
    return _save(fig, out_path)


def select_qualitative(correct: np.ndarray, n: int = 40, seed: int = 0) -> np.ndarray:
    """Pick indices for a qualitative grid: half correctly and half wrongly classified where possible.

    A random sample would be mostly correct for a good model (or mostly wrong for a bad one); balancing
    shows both successes and failure modes. When one group is short, the rest is filled from the other.
    The choice is deterministic for a given ``seed``.

    Args:
        correct: Boolean array, shape (N,), ``True`` where the prediction was right.
        n: How many indices to return at most (fewer if N < n).
        seed: Seed for the random choice within each group.

    Returns:
        Integer indices, shape (min(n, N),): the chosen correct ones first, then the wrong ones, each group
        in ascending order.
    """
    flags = np.asarray(correct, dtype=bool).ravel()
    n = max(0, min(int(n), flags.size))
    right = np.flatnonzero(flags)
    wrong = np.flatnonzero(~flags)
    n_wrong = min(wrong.size, n // 2)
    n_right = min(right.size, n - n_wrong)
    n_wrong = min(wrong.size, n - n_right)  # fill from the wrong group if the correct one is short
    rng = np.random.default_rng(seed)
    pick_right = np.sort(rng.choice(right, size=n_right, replace=False)) if n_right else right[:0]
    pick_wrong = np.sort(rng.choice(wrong, size=n_wrong, replace=False)) if n_wrong else wrong[:0]
    return np.concatenate([pick_right, pick_wrong]).astype(np.int64)


def plot_robustness(section: Mapping[str, Any], out_path: str | os.PathLike[str], title: str = "") -> Path:
    """Score against damage severity, one line per damage, from a metrics.json ``robustness`` section.

    Accuracy when the model classifies, else the mean of the valence and arousal CCC. Every line starts at the
    clean score (severity 0), so the drop each damage causes reads directly.
    """
    clean = section["clean"]
    if "accuracy" in clean:
        label = "accuracy"

        def value(row: Mapping[str, Any]) -> float:
            return float("nan") if row["accuracy"] is None else float(row["accuracy"])
    else:
        label = "mean V/A CCC"

        def value(row: Mapping[str, Any]) -> float:
            pair = (row["valence_ccc"], row["arousal_ccc"])
            return float("nan") if None in pair else float(np.mean(pair))

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    damages = list(dict.fromkeys(row["damage"] for row in section["results"]))
    colours = [to_rgba(f"C{i % 10}") for i in range(len(damages))]
    for i, damage in enumerate(damages):
        rows = sorted((r for r in section["results"] if r["damage"] == damage), key=lambda r: r["severity"])
        style = "-" if i < 10 else "--"
        ax.plot(
            [0] + [r["severity"] for r in rows],
            [value(clean)] + [value(r) for r in rows],
            style,
            marker="o",
            color=colours[i],
            label=f"{damage} ({', '.join(r['setting'].split()[-1] for r in rows)})",
        )
    ax.set_xticks([0, 1, 2, 3], labels=["clean", "1 mild", "2", "3 severe"])
    ax.set_xlabel("severity")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5), title="damage (levels)")
    ax.set_title(f"{title}: {label} under camera damage" if title else f"{label} under camera damage")
    relative = section.get("accuracy_relative" if label == "accuracy" else "valence_ccc_relative")
    if relative is not None:
        fig.supxlabel(f"mean over damages and severities: {relative:.2f} of clean", fontsize="small")
    return _save(fig, out_path)


def plot_reliability(
    y_true: np.ndarray,
    curves: Mapping[str, np.ndarray],
    out_path: str | os.PathLike[str],
    title: str = "",
    n_bins: int = 15,
) -> Path:
    """Reliability diagram: in each of ``n_bins`` equal-width bins of top probability, the accuracy of the faces
    in it against their mean top probability; a calibrated model lies on the diagonal. Below, how many faces each
    bin holds, since a bin of three faces says little.

    Args:
        y_true: Integer class indices, shape (N,).
        curves: Probabilities (N x C) by legend name, e.g. ``{"before": ..., "after temperature": ...}``.
        out_path: Where to write the PNG.
        title: Figure title.
        n_bins: Equal-width bins over [0, 1] (15, as the ECE in metrics.json).
    """
    y_true = np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    fig = Figure(figsize=(5.2, 6.2), layout="constrained")
    ax, hist = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="calibrated")
    for (name, probs), colour in zip(curves.items(), ("tab:red", "tab:blue", "tab:green")):
        probs = np.asarray(probs)
        confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y_true
        which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
        counts = np.bincount(which, minlength=n_bins)
        filled = counts > 0
        mean_conf = np.bincount(which, confidence, n_bins)[filled] / counts[filled]
        accuracy = np.bincount(which, correct.astype(float), n_bins)[filled] / counts[filled]
        ece = float(np.sum(np.abs(accuracy - mean_conf) * counts[filled]) / len(y_true))
        ax.plot(mean_conf, accuracy, marker="o", markersize=4, color=colour, label=f"{name} (ECE {ece:.3f})")
        hist.stairs(counts, edges, color=colour, label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", aspect="equal")
    ax.set_title(title or "Reliability (top probability)")
    ax.legend(loc="upper left", fontsize="small")
    hist.set(xlabel="top probability", ylabel="faces")
    return _save(fig, out_path)
