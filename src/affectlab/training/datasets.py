"""Torch datasets over cached features, and the validation loader."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from affectlab.config import TrainConfig
from affectlab.data.dataset import FaceSplit
from affectlab.data.votes import class_targets

__all__ = ["IndexedDataset", "feature_dataset", "targets", "validation_loader"]


def targets(split: FaceSplit) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Expression codes (-1: none), valence/arousal (NaN: none), each sample's source index and its class target
    (one-hot, crowd vote distribution or zeros; ``data.votes.class_targets``)."""
    return (
        torch.from_numpy(split.expression),
        torch.from_numpy(split.va),
        torch.from_numpy(split.source),
        torch.from_numpy(class_targets(split)),
    )


def feature_dataset(features: torch.Tensor, split: FaceSplit) -> TensorDataset:
    return TensorDataset(features, *targets(split))


def validation_loader(dataset: Dataset, cfg: TrainConfig) -> DataLoader:
    """The validation split in order, with each sample's index (see ``IndexedDataset``), in batches of at least 64."""
    workers = cfg.num_workers
    return DataLoader(
        IndexedDataset(dataset),
        max(cfg.batch_size, 64),
        shuffle=False,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


class IndexedDataset(Dataset):
    """Adds each sample's index to its tuple, so that outputs gathered from several ranks can be put back in order
    and the distributed sampler's padding repeats dropped."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return (*self.inner[index], torch.tensor(index))
