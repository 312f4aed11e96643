"""One interface over the two ways a run reads its data, and ``open_dataset``, which picks the way.

* A raw dataset (folder or CSV) is decoded into RAM once per run (``data.prepared``): fastest for a few thousand
  images, and what the reference study uses.
* A dataset converted by ``affectlab data convert`` (a local folder or a LitData URL on object storage) is read from
  its shards (``data.converted``): memory stays flat however large it is.

Training, evaluation and the reports see only ``Dataset`` and its ``FaceSplit`` parts, never which one it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from affectlab.config import DataConfig
from affectlab.data.converted import check_split_settings, is_converted, open_converted, read_manifest
from affectlab.data.face_tensors import FaceToTensor
from affectlab.data.multi_source import prepare_sources
from affectlab.data.prepared import prepare_data
from affectlab.data.samples import FaceSplit, Problem
from affectlab.data.source import ALL
from affectlab.data.split import SPLITS
from affectlab.errors import AffectlabError

__all__ = ["ALL", "Dataset", "FaceSplit", "check_split_seeds", "open_dataset"]


class Dataset(Protocol):
    """A dataset opened for a run: its splits, the split assignment it was given, and its training loader."""

    @property
    def splits(self) -> Mapping[str, FaceSplit]:
        """The splits asked for (``train``, ``val``, ``test``, or ``all``), each in its saved order."""
        ...

    @property
    def assignment(self) -> dict[str, Any]:
        """Which sample ids went to which split, with the seed and fractions that drew them: ``split.json``."""
        ...

    @property
    def source(self) -> str:
        """Where the data was read from (a folder, CSV file or URL)."""
        ...

    @property
    def problems(self) -> list[Problem]:
        """Samples skipped on the way (unreadable, unlabelled)."""
        ...

    def summary(self) -> dict[str, Any]:
        """What was read, skipped and counted, for ``run.json`` and a study's summary."""
        ...

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
        """Shuffled training batches of ``(image, expression, [valence, arousal], source, class target)``;
        ``sample_weights`` (one per training sample) draws samples in proportion to them instead, ``num_samples``
        per epoch (default: one per sample)."""
        ...


def open_dataset(cfg: DataConfig, input_size: int, splits: tuple[str, ...] = SPLITS) -> Dataset:
    """The data of ``cfg`` at ``input_size`` px: decoded into RAM when raw, streamed when converted.

    ``splits=("all",)`` gives every sample as one split (scoring a model on other data). A converted dataset
    refuses split settings other than those it was converted with. Several datasets (``data.sources``) are
    joined, each split on its own (``data.multi_source``).
    """
    if cfg.sources:  # several datasets: each read, split and decoded on its own, then joined
        return prepare_sources(cfg, input_size, splits)
    if is_converted(cfg.path):
        return open_converted(cfg, input_size, splits)
    return prepare_data(cfg, input_size, splits)


def check_split_seeds(cfg: DataConfig, seeds: list[int]) -> None:
    """Refuse, before any model trains, split seeds that ``open_dataset`` would refuse: a converted dataset holds
    the one split it was converted with, so a study over several split seeds on it would report a spread over
    seeds that all trained and tested on one split. A raw dataset draws any split."""
    if not is_converted(cfg.path):
        return
    manifest = read_manifest(cfg.path)
    stored = manifest["settings"]["split_seed"]
    if len(seeds) > 1 and not cfg.split_file:
        raise AffectlabError(
            f"study.seeds={seeds}: each seed draws its own split, but {cfg.path} is a converted dataset that holds "
            f"the one split of split seed {stored}; study the raw folder, or one seed on the converted data"
        )
    for seed in seeds:
        check_split_settings(dataclasses.replace(cfg, split_seed=seed), manifest, cfg.path)
