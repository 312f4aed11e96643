"""Augmentation and normalisation of whole batches on the training device (``train.augment_on: device``).

The loader then ships uint8 CHW images, a quarter of the bytes of float ones, and the device does per batch what
the loader's processes do per image: the same flip, small affine, colour jitter and random erasing as
``data.transforms.train_augmentation``, with random parameters drawn per sample (kornia), then the backbone's
normalisation. Validation batches are only normalised.
"""

from __future__ import annotations

import torch
from torch import nn

from affectlab.data.transforms import Preprocess
from affectlab.extras import require

__all__ = ["DeviceInputs"]


class DeviceInputs(nn.Module):
    """uint8 NCHW batch -> (augmented in training) normalised float NCHW batch, on the batch's device."""

    def __init__(self, preprocess: Preprocess, augment: bool) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.augment = _kornia_augmentation() if augment else None

    def forward(self, images: torch.Tensor, training: bool) -> torch.Tensor:
        if self.augment is not None and training:
            augmented = self.augment(images.float() / 255.0)  # kornia works on floats in [0, 1]
            return self.preprocess.normalise(augmented * 255.0)
        return self.preprocess.normalise(images)


def _kornia_augmentation() -> nn.Module:
    augmentation = require("kornia.augmentation", "train.augment_on=device")
    return augmentation.AugmentationSequential(
        augmentation.RandomHorizontalFlip(p=0.5),
        augmentation.RandomAffine(degrees=10, translate=(0.08, 0.08), scale=(0.9, 1.1), p=1.0),
        augmentation.ColorJiggle(brightness=0.3, contrast=0.3, saturation=0.2, hue=0.02, p=1.0),
        augmentation.RandomErasing(p=0.25, scale=(0.02, 0.15), value=0.0),
    )
