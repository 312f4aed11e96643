"""Read -> check -> hash -> split: the one way a dataset folder or CSV becomes labelled samples in three splits.

A raw run (decoded into RAM) and ``affectlab data convert`` (written as shards) both start here, so a converted
dataset holds exactly the samples, content hashes and split that a raw run on its folder would train on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectlab.config import DataConfig
from affectlab.data.images import file_md5
from affectlab.data.readers import read_dataset
from affectlab.data.samples import Problem, Sample, SampleSet
from affectlab.data.split import SPLITS, apply_split, load_split, make_split
from affectlab.errors import AffectlabError

__all__ = ["ALL", "SourceSamples", "check_bad_share", "read_source", "resolve_data_path", "sample_hash"]

log = logging.getLogger(__name__)

#: ``splits=(ALL,)``: no split, every sample in one part (``evaluate --split all`` on other data).
ALL = "all"

HashMap = Callable[[Callable[[Sample], str], Iterable[Sample]], Iterator[str]]


def resolve_data_path(path: str) -> Path:
    """``demo`` means the built-in synthetic set, generated into the cache on first use."""
    if path == "demo":
        from affectlab.data.demo import demo_dataset_path

        return demo_dataset_path()
    return Path(path).expanduser()


def sample_hash(sample: Sample) -> str:
    """Content identity of a decoded face: the file's bytes, plus the face box when the layout gives one."""
    return file_md5(sample.path) + (f":{sample.box}" if sample.box else "")


def check_bad_share(root: Path, bad: list[Problem], total: int, max_fraction: float) -> None:
    """Stop before any training when most samples are unreadable: a model trained on the rest would mislead."""
    if total and len(bad) / total > max_fraction:
        raise AffectlabError(
            f"{root}: {len(bad)} of {total} samples are unreadable, more than data.max_bad_fraction={max_fraction:g} "
            f"allows (first: {bad[0]})"
        )


@dataclass
class SourceSamples:
    """One dataset read, checked, hashed and split: the samples of each split, before any pixel is decoded.

    ``assignment`` is what ``split.json`` records (the ids of each split, and the seed and fractions that drew
    it); ``unreadable`` and ``total`` feed the bad-sample check again once decoding has found more problems.
    """

    sample_set: SampleSet
    hashes: dict[str, str]
    assignment: dict[str, Any]
    by_split: dict[str, list[Sample]]
    unreadable: list[Problem]
    total: int

    @property
    def root(self) -> Path:
        return self.sample_set.root

    def check_bad_share(self, more: list[Problem], max_fraction: float) -> None:
        """The bad-sample check with the problems met after reading (decoding, encoding) added."""
        check_bad_share(self.root, self.unreadable + more, self.total, max_fraction)


def read_source(
    cfg: DataConfig,
    splits: tuple[str, ...] = SPLITS,
    hash_map: HashMap = map,
    assignment: dict[str, Any] | None = None,
) -> SourceSamples:
    """Read ``cfg``'s dataset, refuse it when too much is unreadable, hash every file and split (or reuse
    ``assignment``, else ``data.split_file``, else the layout's own split); ``splits=(ALL,)`` keeps every sample in one part. ``hash_map`` may
    hash in parallel; it must return the hashes in the samples' order."""
    sample_set = read_dataset(resolve_data_path(cfg.path), cfg.layout, cfg.image_root, cfg.class_map, cfg.on_bad_sample)
    for problem in sample_set.problems:
        log.warning("skipped %s", problem)
    unreadable = [p for p in sample_set.problems if p.fatal]
    total = len(sample_set.samples) + len(unreadable)
    check_bad_share(sample_set.root, unreadable, total, cfg.max_bad_fraction)
    samples = sample_set.samples
    hashes = dict(zip((s.id for s in samples), hash_map(sample_hash, samples), strict=True))
    if splits == (ALL,):
        assignment = {ALL: [s.id for s in samples]}
        by_split = {ALL: list(samples)}
    else:
        if assignment is not None:
            pass
        elif cfg.split_file:
            assignment = load_split(cfg.split_file)
            if "sources" in assignment:
                raise AffectlabError(
                    f"{cfg.split_file}: the split of several sources ({', '.join(assignment['sources'])}); "
                    "train on the same sources (data.sources) to reuse it"
                )
        elif sample_set.split is not None:  # the layout's own split (FER+'s official folders)
            assignment = sample_set.split
        else:
            assignment = make_split(samples, cfg.split_seed, cfg.val_fraction, cfg.test_fraction, hashes)
        by_split = apply_split(samples, assignment, cfg.split_file or "split")
    return SourceSamples(sample_set, hashes, assignment, by_split, unreadable, total)
