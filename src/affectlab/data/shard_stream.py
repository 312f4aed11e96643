"""The train split of a converted dataset streamed by LitData: shuffled chunk by chunk, each JPEG decoded when used.

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

from affectlab.data.face_tensors import FaceToTensor
from affectlab.data.images import decode_jpeg
from affectlab.labels import NUM_EMOTIONS

__all__ = ["FaceStream", "FaceStreamLoader"]

# LitData sizes each worker's share itself, which is what Lightning's warning asks for.
warnings.filterwarnings("ignore", ".*IterableDataset.*has `__len__` defined.*")


class FaceStream(StreamingDataset):
    """A split's faces streamed from its shards: ``(image tensor, expression, [valence, arousal], source, class
    target)`` (shards hold hard labels: the target is their one-hot), and
    with ``with_index`` the sample's index in the split last (to check which samples a rank and worker saw)."""

    def __init__(
        self, folder: str, to_tensor: FaceToTensor, shuffle: bool = True, seed: int = 0, with_index: bool = False
    ) -> None:
        super().__init__(folder, shuffle=shuffle, seed=seed)
        self.to_tensor = to_tensor
        self.with_index = with_index

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
        va = torch.tensor([item["valence"], item["arousal"]], dtype=torch.float32)
        code = int(item["expression"])
        target = torch.zeros(NUM_EMOTIONS)
        if code >= 0:
            target[code] = 1.0
        image = self.to_tensor(decode_jpeg(item["image"]))
        face = (image, torch.tensor(code), va, torch.tensor(0), target)  # source 0: one dataset
        return (*face, torch.tensor(getattr(index, "index", index))) if self.with_index else face


class FaceStreamLoader(StreamingDataLoader):
    """LitData's loader, reading the process group again before each epoch's workers start."""

    def __iter__(self) -> Any:
        self.dataset.sync_distributed()
        return super().__iter__()
