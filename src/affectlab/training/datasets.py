"""Torch datasets over decoded uint8 arrays or cached features."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from affectlab.config import TrainConfig
from affectlab.data.prepared import SplitData
from affectlab.data.transforms import Preprocess, train_augmentation

__all__ = ["ImageDataset", "IndexedDataset", "feature_dataset", "targets", "validation_loader"]


def targets(split: SplitData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Expression codes (-1: none), valence/arousal (NaN: none) and each sample's source index."""
    return torch.from_numpy(split.expression), torch.from_numpy(split.va), torch.from_numpy(split.source)


class ImageDataset(Dataset):
    """Images are normalised per item; augmentation (uint8 CHW) happens before normalisation. With ``raw`` the
    uint8 CHW image is returned as it is, for augmentation and normalisation on the device (``DeviceInputs``)."""

    def __init__(self, split: SplitData, preprocess: Preprocess, augment: bool = False, raw: bool = False) -> None:
        self.images = split.images
        self.expression, self.va, self.source = targets(split)
        self.preprocess = preprocess
        self.augment = train_augmentation(preprocess.input_size) if augment and not raw else None
        self.raw = raw

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.ascontiguousarray(self.images[index])).permute(2, 0, 1)
        if not self.raw:
            if self.augment is not None:
                image = self.augment(image)
            image = self.preprocess.normalise(image.unsqueeze(0))[0]
        return image, self.expression[index], self.va[index], self.source[index]


def feature_dataset(features: torch.Tensor, split: SplitData) -> TensorDataset:
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
