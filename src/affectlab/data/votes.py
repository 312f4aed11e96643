"""Crowd votes (FER+) as labels: the majority rule, and the class target every sample trains on.

A face labelled by a crowd keeps its vote counts, ``VOTE_COLUMNS`` long: the eight emotions in affectlab's class
order, then ``unknown`` and ``NF`` (not a face). Two things are derived from them:

* the **majority label** (``majority``): the one emotion with the most votes; a tie at the top has none, and a top
  vote of unknown or NF (alone or tied) is not an emotion at all, so such a face is dropped by the reader;
* the **vote distribution** over the eight emotions (unknown and NF votes dropped, the rest renormalised): the
  soft target of ``targets: votes``, FER+'s "probability" training mode (Barsoum et al., ICMI 2016).

``class_targets`` turns a split into the one (N, 8) probability target the loss reads: the vote distribution where
a face trains on its votes, the one-hot of its label otherwise, zeros where it has no class. A hard label is a
one-hot target, so one loss serves both (``training.losses``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from affectlab.labels import EMOTIONS, NUM_EMOTIONS

__all__ = [
    "NOT_A_FACE",
    "TIE",
    "UNKNOWN",
    "VOTE_COLUMNS",
    "VotedSplit",
    "class_targets",
    "majority",
    "vote_distribution",
]

#: The vote columns a sample keeps: affectlab's eight classes in code order, then unknown and not-a-face.
VOTE_COLUMNS: tuple[str, ...] = (*EMOTIONS, "unknown", "NF")
UNKNOWN, NOT_A_FACE = NUM_EMOTIONS, NUM_EMOTIONS + 1
#: ``majority``'s answer for a tie at the top between emotions.
TIE = -1


def majority(votes: tuple[int, ...] | np.ndarray) -> int:
    """The class code of the single top vote; ``TIE`` for a tie between emotions only; ``UNKNOWN`` or
    ``NOT_A_FACE`` when unknown or NF has (or shares) the top vote, which names no emotion."""
    counts = np.asarray(votes)
    tops = np.flatnonzero(counts == counts.max())
    if NOT_A_FACE in tops:
        return NOT_A_FACE
    if UNKNOWN in tops:
        return UNKNOWN
    return int(tops[0]) if len(tops) == 1 else TIE


def vote_distribution(votes: np.ndarray) -> np.ndarray:
    """(N, 10) counts -> (N, 8) shares of the emotion votes (unknown/NF dropped, renormalised); zero rows where a
    face has no emotion vote."""
    emotion = np.asarray(votes, dtype=np.float64)[:, :NUM_EMOTIONS]
    total = emotion.sum(axis=1, keepdims=True)
    return np.divide(emotion, total, out=np.zeros_like(emotion), where=total > 0).astype(np.float32)


class VotedSplit(Protocol):
    """What ``class_targets`` reads of a split (``FaceSplit`` has it)."""

    @property
    def expression(self) -> np.ndarray: ...

    @property
    def votes(self) -> np.ndarray: ...

    @property
    def soft(self) -> np.ndarray: ...


def class_targets(split: VotedSplit) -> np.ndarray:
    """(N, 8) float32 class targets: the vote distribution of faces that train on votes (``soft``), the one-hot of
    every other face's class, and zeros for a face without one (left out of the loss)."""
    expression = np.asarray(split.expression)
    target = np.zeros((len(expression), NUM_EMOTIONS), dtype=np.float32)
    labelled = np.flatnonzero(expression >= 0)
    target[labelled, expression[labelled]] = 1.0
    soft = np.asarray(split.soft, dtype=bool)
    if soft.any():
        distribution = vote_distribution(np.asarray(split.votes)[soft])
        has_votes = distribution.sum(axis=1) > 0
        rows = np.flatnonzero(soft)[has_votes]
        target[rows] = distribution[has_votes]
    return target
