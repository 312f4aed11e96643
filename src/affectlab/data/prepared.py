"""A raw dataset (folder or CSV) decoded into RAM for a run: the fastest path for a few thousand images.

Labels are read, files hashed and the split made or reused by ``data.source`` (as for a conversion); here every
face of the chosen splits is decoded, cropped and resized into one uint8 array per split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from affectlab.config import DataConfig
from affectlab.data.face_tensors import FaceDataset, FaceToTensor, shuffled_loader
from affectlab.data.images import decode_samples
from affectlab.data.samples import FaceSplit, Problem, Sample, SampleSet
from affectlab.data.source import read_source
from affectlab.data.split import SPLITS
from affectlab.data.votes import VOTE_COLUMNS
from affectlab.errors import AffectlabError

__all__ = [
    "PreparedData",
    "SplitData",
    "majority_faces",
    "majority_only",
    "prepare_data",
    "split_data_from_samples",
    "split_rows",
]

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    """One split as arrays: uint8 NHWC images, expression codes (-1 if absent), valence/arousal (NaN if absent),
    crowd votes (``data.votes.VOTE_COLUMNS``, zeros if absent) and whether each face trains on its votes."""

    ids: list[str]
    images: np.ndarray
    expression: np.ndarray
    va: np.ndarray
    hashes: list[str] = field(default_factory=list)
    #: Which source of a multi-dataset run each sample comes from (index into its sources; all 0 for one dataset).
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    votes: np.ndarray = field(default_factory=lambda: np.zeros((0, len(VOTE_COLUMNS)), dtype=np.float32))
    #: The face trains on its vote distribution (``targets: votes``), not on its majority label.
    soft: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        if len(self.source) != len(self.ids):
            self.source = np.zeros(len(self.ids), dtype=np.int64)
        if len(self.votes) != len(self.ids):
            self.votes = np.zeros((len(self.ids), len(VOTE_COLUMNS)), dtype=np.float32)
        if len(self.soft) != len(self.ids):
            self.soft = np.zeros(len(self.ids), dtype=bool)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class PreparedData:
    """A raw dataset decoded into RAM: a ``Dataset`` (see ``data.dataset``)."""

    sample_set: SampleSet
    assignment: dict[str, Any]
    splits: dict[str, SplitData]
    decode_problems: list[Problem]

    @property
    def problems(self) -> list[Problem]:
        return self.sample_set.problems + self.decode_problems

    @property
    def source(self) -> str:
        return str(self.sample_set.root)

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.sample_set.root),
            "layout": self.sample_set.layout,
            "samples": len(self.sample_set.samples),
            "excluded": dict(self.sample_set.excluded),
            "skipped": [str(p) for p in self.problems if p.fatal],
            "counts": {name: len(data) for name, data in self.splits.items()},
            "class_counts": self.sample_set.class_counts(),
        }

    def train_loader(
        self,
        to_tensor: FaceToTensor,
        batch_size: int,
        num_workers: int,
        seed: int,
        generator: torch.Generator,
        sample_weights: np.ndarray | None = None,
        num_samples: int | None = None,
    ) -> DataLoader:
        """The train split in RAM, reshuffled each epoch by ``generator`` (or drawn by ``sample_weights``,
        ``num_samples`` per epoch)."""
        train = FaceDataset(self.splits["train"], to_tensor)
        return shuffled_loader(train, batch_size, num_workers, generator, sample_weights, num_samples)


def split_rows(split: FaceSplit, rows: np.ndarray, ids: list[str] | None = None) -> SplitData:
    """The samples ``rows`` (indices) of a split, as a split in RAM; ``ids`` renames them."""
    return SplitData(
        ids if ids is not None else [split.ids[i] for i in rows],
        split.images[rows],
        split.expression[rows],
        split.va[rows],
        [split.hashes[i] for i in rows] if split.hashes else [],
        split.source[rows],
        split.votes[rows],
        split.soft[rows],
    )


def majority_faces(split: FaceSplit) -> tuple[FaceSplit, np.ndarray | None]:
    """The faces of ``split`` scored by accuracy: crowd-voted faces without a single top vote (FER+ ties) are left
    out, as in ``evaluation.score``; (split, None) when there are none to leave out, else (part, rows kept)."""
    keep = np.asarray(split.expression) >= 0
    voted = np.asarray(split.votes).sum(axis=1) > 0
    if keep.all() or not voted.any():
        return split, None
    rows = np.flatnonzero(keep)
    return split_rows(split, rows), rows


def split_data_from_samples(
    samples: list[Sample], size: int, on_bad_sample: str, hashes: dict[str, str], targets: str = "votes"
) -> tuple[SplitData, list[Problem]]:
    """Decode ``samples`` into a split; faces with crowd votes train on them when ``targets`` is ``votes``."""
    images, ok, problems = decode_samples(samples, size, on_bad_sample)
    kept = [samples[i] for i in ok]
    expression = np.array([-1 if s.expression is None else s.expression for s in kept], dtype=np.int64)
    va = np.array(
        [[np.nan if s.valence is None else s.valence, np.nan if s.arousal is None else s.arousal] for s in kept],
        dtype=np.float32,
    ).reshape(-1, 2)
    no_votes = (0,) * len(VOTE_COLUMNS)
    votes = np.array([s.votes or no_votes for s in kept], dtype=np.float32).reshape(-1, len(VOTE_COLUMNS))
    soft = np.array([s.votes is not None and targets == "votes" for s in kept], dtype=bool)
    split = SplitData(
        [s.id for s in kept], images, expression, va, [hashes[s.id] for s in kept], votes=votes, soft=soft
    )
    return split, problems


def majority_only(samples: list[Sample]) -> list[Sample]:
    """``targets: majority``: the training faces with a majority label; a tie between emotions trains nothing."""
    kept = [s for s in samples if s.votes is None or s.expression is not None]
    if len(kept) < len(samples):
        log.info("targets: majority: %d tied training face(s) left out (no majority label)", len(samples) - len(kept))
    return kept


def prepare_data(
    cfg: DataConfig, input_size: int, splits: tuple[str, ...] = SPLITS, assignment: dict[str, Any] | None = None
) -> PreparedData:
    """Read, split and decode a raw dataset into RAM; ``splits=("all",)`` skips splitting and decodes every
    sample; ``assignment`` is a split already loaded (one source's part of a multi-dataset ``split.json``), used
    instead of ``data.split_file``. Use ``data.dataset.open_dataset``, which also opens converted datasets."""
    source = read_source(cfg, splits, assignment=assignment)
    decoded: dict[str, SplitData] = {}
    decode_problems: list[Problem] = []
    for name in splits:
        samples = source.by_split[name]
        if name == "train" and cfg.targets == "majority":
            samples = majority_only(samples)
        decoded[name], problems = split_data_from_samples(
            samples, input_size, cfg.on_bad_sample, source.hashes, cfg.targets
        )
        decode_problems.extend(problems)
    for problem in decode_problems:
        log.warning("skipped %s", problem)
    source.check_bad_share(decode_problems, cfg.max_bad_fraction)
    for name, part in decoded.items():
        assigned = len(source.by_split[name])
        if not len(part):
            raise AffectlabError(
                f"{source.root}: the {name} split is empty ({assigned} sample(s) assigned, "
                f"{assigned - len(part)} unreadable); a run needs samples in every split"
            )
    return PreparedData(source.sample_set, source.assignment, decoded, decode_problems)
