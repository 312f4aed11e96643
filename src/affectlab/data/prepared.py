"""Turn a data config into decoded, split arrays ready for training and evaluation.

This is the one place where labels are read, files hashed, the split made or reused, and images decoded, so
the study, ``train`` and ``evaluate`` all see the same samples in the same order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectlab.config import DataConfig
from affectlab.data.images import decode_samples, file_md5
from affectlab.data.readers import read_dataset
from affectlab.data.samples import Problem, Sample, SampleSet
from affectlab.data.split import SPLITS, apply_split, load_split, make_split
from affectlab.errors import AffectlabError

__all__ = [
    "PreparedData",
    "SplitData",
    "check_bad_share",
    "prepare_data",
    "resolve_data_path",
    "sample_hash",
    "split_data_from_samples",
]

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    """One split as arrays: uint8 NHWC images, expression codes (-1 if absent), valence/arousal (NaN if absent)."""

    ids: list[str]
    images: np.ndarray
    expression: np.ndarray
    va: np.ndarray
    hashes: list[str] = field(default_factory=list)
    #: Which source of a multi-dataset run each sample comes from (index into its sources; all 0 for one dataset).
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        if len(self.source) != len(self.ids):
            self.source = np.zeros(len(self.ids), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class PreparedData:
    sample_set: SampleSet
    split: dict[str, Any]
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


def resolve_data_path(path: str) -> Path:
    """``demo`` means the built-in synthetic set, generated into the cache on first use."""
    if path == "demo":
        from affectlab.data.demo import demo_dataset_path

        return demo_dataset_path()
    return Path(path).expanduser()


def split_data_from_samples(
    samples: list[Sample], size: int, on_bad_sample: str, hashes: dict[str, str]
) -> tuple[SplitData, list[Problem]]:
    images, ok, problems = decode_samples(samples, size, on_bad_sample)
    kept = [samples[i] for i in ok]
    expression = np.array([-1 if s.expression is None else s.expression for s in kept], dtype=np.int64)
    va = np.array(
        [[np.nan if s.valence is None else s.valence, np.nan if s.arousal is None else s.arousal] for s in kept],
        dtype=np.float32,
    ).reshape(-1, 2)
    return SplitData([s.id for s in kept], images, expression, va, [hashes[s.id] for s in kept]), problems


def sample_hash(sample: Sample) -> str:
    """Content identity of a decoded face: the file's bytes, plus the face box when the layout gives one."""
    return file_md5(sample.path) + (f":{sample.box}" if sample.box else "")


def prepare_data(
    cfg: DataConfig, input_size: int, splits: tuple[str, ...] = SPLITS, split: dict[str, Any] | None = None
) -> PreparedData:
    """Read, split and decode; ``splits=("all",)`` skips splitting and decodes every sample; ``split`` is a split
    already loaded (one source's part of a multi-dataset ``split.json``), used instead of ``cfg.split_file``.

    The rule for memory: a raw dataset (folder or CSV) is decoded into RAM, which is fastest for a few thousand
    images; a dataset converted by ``affectlab data convert`` (local folder or object-storage URL) is streamed
    from its shards instead, so memory stays flat however large it is.
    """
    from affectlab.data.streaming import is_converted, open_converted

    if is_converted(cfg.path):
        return open_converted(cfg, input_size, splits)  # type: ignore[return-value]  # same interface, streamed
    sample_set = read_dataset(resolve_data_path(cfg.path), cfg.layout, cfg.image_root, cfg.class_map, cfg.on_bad_sample)
    for problem in sample_set.problems:
        log.warning("skipped %s", problem)
    unreadable = [p for p in sample_set.problems if p.fatal]
    total = len(sample_set.samples) + len(unreadable)
    check_bad_share(sample_set.root, unreadable, total, cfg.max_bad_fraction)
    hashes = {s.id: sample_hash(s) for s in sample_set.samples}
    if splits == ("all",):
        split = {"all": [s.id for s in sample_set.samples]}
        by_split = {"all": sample_set.samples}
    elif split is not None:
        pass
    elif cfg.split_file:
        split = load_split(cfg.split_file)
        if "sources" in split:
            raise AffectlabError(
                f"{cfg.split_file}: the split of several sources ({', '.join(split['sources'])}); "
                "train on the same sources (data.sources) to reuse it"
            )
    else:
        split = make_split(sample_set.samples, cfg.split_seed, cfg.val_fraction, cfg.test_fraction, hashes)
    if splits != ("all",):
        by_split = apply_split(sample_set.samples, split, cfg.split_file or "split")
    decoded: dict[str, SplitData] = {}
    decode_problems: list[Problem] = []
    for name in splits:
        decoded[name], problems = split_data_from_samples(by_split[name], input_size, cfg.on_bad_sample, hashes)
        decode_problems.extend(problems)
    for problem in decode_problems:
        log.warning("skipped %s", problem)
    check_bad_share(sample_set.root, unreadable + decode_problems, total, cfg.max_bad_fraction)
    for name, part in decoded.items():
        if not len(part):
            raise AffectlabError(
                f"{sample_set.root}: the {name} split is empty ({len(by_split[name])} sample(s) assigned, "
                f"{len(by_split[name]) - len(part)} unreadable); a run needs samples in every split"
            )
    return PreparedData(sample_set, split, decoded, decode_problems)


def check_bad_share(root: Path, bad: list[Problem], total: int, max_fraction: float) -> None:
    """Stop before any training when most samples are unreadable: a model trained on the rest would mislead."""
    if total and len(bad) / total > max_fraction:
        raise AffectlabError(
            f"{root}: {len(bad)} of {total} samples are unreadable, more than data.max_bad_fraction={max_fraction:g} "
            f"allows (first: {bad[0]})"
        )
