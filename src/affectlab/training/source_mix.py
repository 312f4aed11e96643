"""How several sources are mixed in training: what each one labels, its class weights, and its share of the draws.

A large source would drown a small one if the samples were shuffled together (6,294 FER faces against 2,799
AffectNet training faces), so a run on several sources draws them by weight: each source gets its
``data.sources[i].weight`` share of every epoch's draws (equal shares by default, whatever the sizes), drawn with
replacement inside the source. A source's ``per_epoch`` instead fixes its draws per epoch (the others then draw
their training split's size), so a source ten times the size of the others (FER+) adds a set number of faces.
``train.sampler: balanced`` also balances the classes inside each source; otherwise ``train.class_weights:
balanced`` weights each source's classes by that source's own counts.

Faces that train on crowd votes (FER+, ``targets: votes``) count towards a class by their vote share: a class's
count is its **summed vote mass** (a face voted 6 Happy, 4 Neutral adds 0.6 and 0.4). The loss pulls each class in
proportion to its target mass, so weighting (or sampling) by mass equalises what each class contributes; majority
counts would ignore the tied faces and the minority votes (Contempt is the top vote of 156 faces but holds more
vote mass than that). On one-hot targets the mass is the count, and the weights are sklearn's, unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight

from affectlab.data.multi_source import SourceInfo
from affectlab.errors import AffectlabError
from affectlab.labels import NUM_EMOTIONS

__all__ = [
    "balanced_class_weights",
    "check_sources_label",
    "class_balanced_weights",
    "class_mask_table",
    "epoch_draws",
    "per_source_class_weights",
    "source_draw_weights",
]


def balanced_class_weights(
    expression: np.ndarray, target: np.ndarray | None = None, soft: np.ndarray | None = None
) -> torch.Tensor:
    """sklearn's 'balanced' weights; classes absent from training get weight 1 so indices stay aligned. Where some
    faces train on votes (``soft``), a class's count is its vote mass in ``target`` (``class_targets``)."""
    if target is not None and soft is not None and soft.any():
        return torch.from_numpy(_mass_weights(target))
    expression = expression[expression >= 0]
    weights = np.ones(NUM_EMOTIONS, dtype=np.float32)
    if len(expression):
        present = np.unique(expression)
        weights[present] = compute_class_weight("balanced", classes=present, y=expression)
    return torch.from_numpy(weights)


def _mass_weights(target: np.ndarray) -> np.ndarray:
    """'balanced' weights from vote mass: total mass / (classes present x the class's mass)."""
    mass = np.asarray(target, dtype=np.float64).sum(axis=0)
    present = mass > 0
    weights = np.ones(NUM_EMOTIONS, dtype=np.float64)
    weights[present] = mass.sum() / (present.sum() * mass[present])
    return weights.astype(np.float32)


def per_source_class_weights(
    expression: np.ndarray,
    source: np.ndarray,
    count: int,
    target: np.ndarray | None = None,
    soft: np.ndarray | None = None,
    balanced: list[bool] | None = None,
) -> torch.Tensor:
    """Balanced class weights computed inside each source: one row per source; a source that ``balanced`` marks
    False (its ``class_weights: none``) gets weight 1 for every class."""
    rows = [source == i for i in range(count)]
    balanced = [True] * count if balanced is None else balanced
    table = []
    for r, weighted in zip(rows, balanced, strict=True):
        if not weighted:
            table.append(torch.ones(NUM_EMOTIONS))
        elif target is None or soft is None:
            table.append(balanced_class_weights(expression[r]))
        else:
            table.append(balanced_class_weights(expression[r], target[r], soft[r]))
    return torch.stack(table)


def class_balanced_weights(expression: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """One draw weight per sample, inversely proportional to its class's count: each class drawn equally. With
    vote targets a face's weight is the sum over classes of its share / the class's mass (one-hot: 1 / count,
    exactly as without votes); this moves every class's drawn vote mass towards equal, exactly equal only for
    one-hot targets (a face that carries two classes cannot be drawn for one of them alone)."""
    if target is None:
        per_class = np.bincount(expression, minlength=NUM_EMOTIONS).astype(np.float64)
        return 1.0 / per_class[expression]
    mass = np.asarray(target, dtype=np.float64).sum(axis=0)
    inverse = np.divide(1.0, mass, out=np.zeros_like(mass), where=mass > 0)
    return np.asarray(target, dtype=np.float64) @ inverse


def class_mask_table(infos: list[SourceInfo]) -> torch.Tensor:
    """Which classes each source labels (sources x classes); a source without classes masks none (it has no
    class targets, so its rows never reach the cross-entropy)."""
    return torch.from_numpy(np.stack([info.class_mask if info.classes else ~info.class_mask for info in infos]))


def epoch_draws(infos: list[SourceInfo], source: np.ndarray) -> int | None:
    """Faces drawn per epoch when a source fixes its own (``per_epoch``): the sum of each source's ``per_epoch``,
    or its training split's size where unset; None (the whole training split, as before) when none does."""
    if all(info.per_epoch is None for info in infos):
        return None
    sizes = np.bincount(source, minlength=len(infos))
    return int(sum(info.per_epoch or int(sizes[i]) for i, info in enumerate(infos)))


def source_draw_weights(
    infos: list[SourceInfo],
    source: np.ndarray,
    expression: np.ndarray,
    class_balanced: bool,
    target: np.ndarray | None = None,
    soft: np.ndarray | None = None,
) -> np.ndarray:
    """Each sample's probability of a draw: its source's share of the weights (or of ``epoch_draws``, with
    ``per_epoch``), spread over the source's samples (evenly, or evenly over its classes first with
    ``class_balanced``; by vote mass where the source's faces train on votes)."""
    draws = epoch_draws(infos, source)
    sizes = np.bincount(source, minlength=len(infos))
    total = sum(info.weight for info in infos)
    probability = np.zeros(len(source), dtype=np.float64)
    for index, info in enumerate(infos):
        rows = np.flatnonzero(source == index)
        if not len(rows):
            continue
        part = info.weight / total if draws is None else (info.per_epoch or int(sizes[index])) / draws
        share = np.full(len(rows), part / len(rows))
        labels = expression[rows]
        if class_balanced and target is not None and soft is not None and soft[rows].any():
            balanced = class_balanced_weights(labels, target[rows])
            share = part * balanced / balanced.sum()
        elif class_balanced and (labels >= 0).all():
            classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
            share = part / (len(classes) * counts[inverse])
        probability[rows] = share
    return probability


def check_sources_label(infos: list[SourceInfo], has_expression: bool, has_va: bool, task: str) -> None:
    """A source must label something the model learns; one that labels nothing of it would only add noise."""
    for info in infos:
        if not ((has_expression and info.classes) or (has_va and info.has_va)):
            raise AffectlabError(
                f"data.sources ({info.name}): labels no task of model.task={task} "
                f"({'no classes' if not info.classes else 'classes'}, {'no ' if not info.has_va else ''}"
                "valence/arousal); drop it or choose another task"
            )
