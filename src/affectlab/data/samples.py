"""The in-memory description of a dataset, independent of how it was laid out on disk."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from affectlab.data.suffixes import IMAGE_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "FaceArray", "FaceSplit", "Problem", "Sample", "SampleSet", "natural_key"]


def natural_key(sample_id: str) -> tuple[int, str]:
    """Numeric ids in numeric order (AffectNet's 2 before 10), then the others by name."""
    return (int(sample_id), "") if sample_id.isdigit() else (1 << 62, sample_id)


@dataclass(frozen=True)
class Sample:
    """One labelled face image.

    ``expression`` is None for datasets without class labels, ``valence``/``arousal`` None where the layout has
    none (class folders). ``box`` is an (x, y, w, h) face box inside the image, when the layout gives one.
    ``votes`` are a crowd's vote counts (FER+), ``data.votes.VOTE_COLUMNS`` long: the eight classes in code order,
    then unknown and not-a-face; ``expression`` is then their single top vote (None for a tie).
    """

    id: str
    path: Path
    expression: int | None
    valence: float | None = None
    arousal: float | None = None
    box: tuple[int, int, int, int] | None = None
    votes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Problem:
    """Something wrong with one file; ``fatal`` problems make ``data check`` fail."""

    path: str
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class SampleSet:
    """Samples read from disk, plus what was excluded or broken on the way and why."""

    root: Path
    layout: str
    samples: list[Sample]
    class_names: tuple[str, ...]
    problems: list[Problem] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)
    #: The layout's own train/val/test split (FER+'s official three folders), used unless a split file is given.
    split: dict[str, Any] | None = None

    @property
    def has_votes(self) -> bool:
        return any(s.votes is not None for s in self.samples)

    @property
    def has_expression(self) -> bool:
        """Every sample names a class: a label, or crowd votes (a tie between emotions trains on its votes)."""
        return bool(self.samples) and all(s.expression is not None or s.votes is not None for s in self.samples)

    @property
    def has_va(self) -> bool:
        return bool(self.samples) and all(s.valence is not None and s.arousal is not None for s in self.samples)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(s.expression for s in self.samples if s.expression is not None)
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

    def exclusion_summary(self) -> str:
        if not self.excluded:
            return "nothing excluded"
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.excluded.items()))


class FaceArray(Protocol):
    """uint8 NHWC RGB faces by index, slice or index list: a decoded array, or faces a converted dataset decodes
    only when asked for (``data.converted.FaceImages``)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, key: Any) -> np.ndarray: ...


class FaceSplit(Protocol):
    """One split of a dataset: its faces, and per face its id, content hash, expression code (-1 if absent),
    valence/arousal (NaN if absent), source index (which of several datasets it comes from; 0 for one) and crowd
    votes (FER+; zeros if absent)."""

    @property
    def ids(self) -> list[str]: ...

    @property
    def hashes(self) -> list[str]: ...

    @property
    def expression(self) -> np.ndarray: ...

    @property
    def va(self) -> np.ndarray: ...

    @property
    def source(self) -> np.ndarray: ...

    @property
    def votes(self) -> np.ndarray:
        """(N, 10) crowd vote counts (``data.votes.VOTE_COLUMNS``); zeros for a face without votes."""
        ...

    @property
    def soft(self) -> np.ndarray:
        """(N,) bool: the face trains on its vote distribution rather than its majority label."""
        ...

    @property
    def images(self) -> FaceArray: ...

    def __len__(self) -> int: ...
