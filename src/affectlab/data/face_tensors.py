"""One face to the tensors a loader yields, the same for faces decoded in RAM and faces streamed from shards."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from affectlab.config import AugmentConfig
from affectlab.data.augment import loader_pipeline
from affectlab.data.samples import FaceSplit
from affectlab.data.transforms import Preprocess
from affectlab.data.votes import class_targets

__all__ = ["FaceDataset", "FaceToTensor", "shuffled_loader"]


class FaceToTensor:
    """A uint8 HWC RGB face -> the image tensor a model is trained on.

    Augmented (``augment``, the recipe's spec, on uint8 CHW before normalisation) and normalised per face; or, with ``raw``, the uint8 CHW
    face as it is, for augmentation and normalisation of whole batches on the device (``DeviceInputs``).
    """

    def __init__(self, preprocess: Preprocess, augment: AugmentConfig | None = None, raw: bool = False) -> None:
        self.preprocess = preprocess
        self.augment = loader_pipeline(augment) if augment is not None and not raw else None
        self.raw = raw

    def __call__(self, face: np.ndarray) -> torch.Tensor:
        image = torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1)
        if self.raw:
            return image
        if self.augment is not None:
            image = self.augment(image)
        return self.preprocess.normalise(image.unsqueeze(0))[0]


class FaceDataset(Dataset):
    """A split's faces by index: ``(image tensor, expression, [valence, arousal], source index, class target)``;
    the class target is the one-hot label or the crowd's vote distribution (``data.votes.class_targets``)."""

    def __init__(self, split: FaceSplit, to_tensor: FaceToTensor) -> None:
        self.images = split.images
        self.expression, self.va = torch.from_numpy(split.expression), torch.from_numpy(split.va)
        self.source = torch.from_numpy(split.source)
        self.target = torch.from_numpy(class_targets(split))
        self.to_tensor = to_tensor

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        face = self.to_tensor(self.images[index])
        return face, self.expression[index], self.va[index], self.source[index], self.target[index]


def shuffled_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    generator: torch.Generator,
    sample_weights: np.ndarray | None = None,
    num_samples: int | None = None,
) -> DataLoader:
    """Training batches of a map-style dataset: reshuffled each epoch, or drawn with replacement in proportion
    to ``sample_weights`` (``num_samples`` per epoch; default one per sample); ``generator`` drives both, so a
    resumed run draws the batches the uninterrupted one would."""
    sampler = None
    if sample_weights is not None:
        draws = num_samples or len(sample_weights)
        sampler = WeightedRandomSampler(sample_weights.tolist(), draws, generator=generator)
    return DataLoader(
        dataset,
        batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
