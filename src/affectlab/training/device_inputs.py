"""Augmentation and normalisation of whole batches on the training device (``train.augment_on: device``).

The loader then ships uint8 CHW images, a quarter of the bytes of float ones, and the device does per batch what
the loader's processes do per image: the same ``[augment]`` ops with the same parameter laws
(``affectlab.data.augment``, kornia, parameters drawn per sample), then the backbone's normalisation.
Validation batches are only normalised.
"""

from __future__ import annotations

import torch
from torch import nn

from affectlab.config import AugmentConfig
from affectlab.data.augment import device_pipeline
from affectlab.data.transforms import Preprocess

__all__ = ["DeviceInputs"]


class DeviceInputs(nn.Module):
    """uint8 NCHW batch -> (augmented by ``augment`` in training) normalised float NCHW batch, on its device."""

    def __init__(self, preprocess: Preprocess, augment: AugmentConfig | None) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.augment = device_pipeline(augment) if augment is not None else None

    def forward(self, images: torch.Tensor, training: bool) -> torch.Tensor:
        if self.augment is not None and training:
            augmented = self.augment(images.float() / 255.0)  # kornia works on floats in [0, 1]
            return self.preprocess.normalise(augmented * 255.0)
        return self.preprocess.normalise(images)
