"""Loaders for training on a converted dataset: the train split streamed by LitData, validation read by index.

LitData splits the streamed samples between ranks and loader workers itself (Lightning adds no sampler to an
iterable dataset). It learns the rank from ``torch.distributed``, which Lightning starts only inside ``fit``, after
the loaders are built; so the rank is read again when an epoch's iterator is made. Under DDP every rank then gets
the same number of batches (LitData's ``drop_last``), as DDP's gradient all-reduce needs; on one process every
sample is used each epoch.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from litdata import StreamingDataLoader, StreamingDataset
from litdata.utilities.env import _DistributedEnv
from torch.utils.data import DataLoader

from affectlab.config import RunConfig
from affectlab.data.streaming import StreamedData, decode_jpeg
from affectlab.data.transforms import Preprocess, train_augmentation
from affectlab.errors import AffectlabError
from affectlab.training.datasets import ImageDataset, validation_loader

__all__ = ["FaceStream", "FaceStreamLoader", "streamed_loaders"]

# LitData sizes each worker's share itself, which is what Lightning's warning asks for.
warnings.filterwarnings("ignore", ".*IterableDataset.*has `__len__` defined.*")


class FaceStream(StreamingDataset):
    """A split's faces streamed from its shards: ``(normalised CHW image, expression, [valence, arousal], source)``,
    and with ``with_index`` the sample's index in the split last (to check which samples a rank and worker saw)."""

    def __init__(
        self,
        folder: str,
        preprocess: Preprocess,
        augment: bool = False,
        shuffle: bool = True,
        seed: int = 0,
        with_index: bool = False,
        raw: bool = False,
    ) -> None:
        super().__init__(folder, shuffle=shuffle, seed=seed)
        self.preprocess = preprocess
        self.augment = train_augmentation(preprocess.input_size) if augment and not raw else None
        self.with_index = with_index
        self.raw = raw  # uint8 CHW out, for augmentation and normalisation on the device

    def sync_distributed(self) -> None:
        """Take the rank and world size of a process group started since construction."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            env = _DistributedEnv.detect()
            if env != self.distributed_env:  # type: ignore[has-type]  # set by litdata's constructor
                self.distributed_env = env
                self.set_drop_last(env.world_size > 1)

    def __len__(self) -> int:
        self.sync_distributed()
        return super().__len__()

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, ...]:
        item = super().__getitem__(index)
        image = torch.from_numpy(decode_jpeg(item["image"])).permute(2, 0, 1)
        if self.augment is not None:
            image = self.augment(image)
        va = torch.tensor([item["valence"], item["arousal"]], dtype=torch.float32)
        pixels = image if self.raw else self.preprocess.normalise(image.unsqueeze(0))[0]
        face = (pixels, torch.tensor(int(item["expression"])), va, torch.tensor(0))  # source 0: one dataset
        return (*face, torch.tensor(getattr(index, "index", index))) if self.with_index else face


class FaceStreamLoader(StreamingDataLoader):
    """LitData's loader, reading the process group again before each epoch's workers start."""

    def __iter__(self) -> Any:
        self.dataset.sync_distributed()
        return super().__iter__()


def streamed_loaders(
    cfg: RunConfig, data: StreamedData, preprocess: Preprocess
) -> tuple[DataLoader, DataLoader, dict[str, torch.Tensor], torch.Generator]:
    """The train and validation loaders of ``fit`` for a converted dataset (no feature cache: nothing in RAM)."""
    t = cfg.train
    if t.sampler != "none":
        raise AffectlabError(
            f"train.sampler={t.sampler} needs the dataset in RAM; a converted dataset is streamed "
            "(use train.class_weights=balanced instead)"
        )
    raw = t.augment_on == "device"
    train_set = FaceStream(data.splits["train"].folders[0], preprocess, augment=t.augment, seed=t.seed, raw=raw)
    loader_args: dict[str, Any] = {"num_workers": t.num_workers, "persistent_workers": t.num_workers > 0}
    train_loader = FaceStreamLoader(train_set, batch_size=t.batch_size, **loader_args)
    val_set = ImageDataset(data.splits["val"], preprocess, raw=raw)  # type: ignore[arg-type]
    return train_loader, validation_loader(val_set, t), {}, torch.Generator().manual_seed(t.seed)
