"""How several sources are mixed in training: what each one labels, its class weights, and its share of the draws.

A large source would drown a small one if the samples were shuffled together (6,294 FER faces against 2,799
AffectNet training faces), so a run on several sources draws them by weight: each source gets its
``data.sources[i].weight`` share of every epoch's draws (equal shares by default, whatever the sizes), drawn with
replacement inside the source. ``train.sampler: balanced`` also balances the classes inside each source; otherwise
``train.class_weights: balanced`` weights each source's classes by that source's own counts.
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
    "class_mask_table",
    "per_source_class_weights",
    "source_draw_weights",
]


def balanced_class_weights(expression: np.ndarray) -> torch.Tensor:
    """sklearn's 'balanced' weights; classes absent from training get weight 1 so indices stay aligned."""
    expression = expression[expression >= 0]
    weights = np.ones(NUM_EMOTIONS, dtype=np.float32)
    if len(expression):
        present = np.unique(expression)
        weights[present] = compute_class_weight("balanced", classes=present, y=expression)
    return torch.from_numpy(weights)


def per_source_class_weights(expression: np.ndarray, source: np.ndarray, count: int) -> torch.Tensor:
    """Balanced class weights computed inside each source: one row per source."""
    return torch.stack([balanced_class_weights(expression[source == i]) for i in range(count)])


def class_mask_table(infos: list[SourceInfo]) -> torch.Tensor:
    """Which classes each source labels (sources x classes); a source without classes masks none (it has no
    class targets, so its rows never reach the cross-entropy)."""
    return torch.from_numpy(np.stack([info.class_mask if info.classes else ~info.class_mask for info in infos]))


def source_draw_weights(
    infos: list[SourceInfo], source: np.ndarray, expression: np.ndarray, class_balanced: bool
) -> np.ndarray:
    """Each sample's probability of a draw: its source's share of the weights, spread over the source's samples
    (evenly, or evenly over its classes first with ``class_balanced``)."""
    total = sum(info.weight for info in infos)
    probability = np.zeros(len(source), dtype=np.float64)
    for index, info in enumerate(infos):
        rows = np.flatnonzero(source == index)
        if not len(rows):
            continue
        share = np.full(len(rows), info.weight / total / len(rows))
        labels = expression[rows]
        if class_balanced and (labels >= 0).all():
            classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
            share = info.weight / total / (len(classes) * counts[inverse])
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
