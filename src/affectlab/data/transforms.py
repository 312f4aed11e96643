"""Preprocessing, defined once and carried by every checkpoint and ONNX file.

Normalisation uses the mean/std of the backbone's weights metadata, so a model is always fed what its weights
were trained on. Train-time augmentation (on uint8 tensors, before normalisation) is ``affectlab.data.augment``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from affectlab.data.samples import FaceArray

if TYPE_CHECKING:  # torch is imported where it is used, so ONNX-only inference never loads it
    import torch

__all__ = ["Preprocess", "batched_inputs"]


@dataclass(frozen=True)
class Preprocess:
    input_size: int = 128
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    #: Extra border around a detected face box, as a fraction of the box side (AffectNet crops are loose).
    face_margin: float = 0.2
    #: Offset (x, y) of the crop's centre from the detected box's centre, as fractions of the box's longer side.
    #: With ``face_margin`` it is the model's crop protocol: fitted on the training images (``data.crop_fit``)
    #: so that a detected face is cropped as the training faces were. (0, 0) for models trained before it.
    face_shift: tuple[float, float] = (0.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocess:
        return cls(
            input_size=int(values["input_size"]),
            mean=tuple(values["mean"]),
            std=tuple(values["std"]),
            face_margin=float(values.get("face_margin", 0.2)),
            face_shift=tuple(float(v) for v in values.get("face_shift", (0.0, 0.0))),  # type: ignore[arg-type]
        )

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC or NCHW batch -> normalised float NCHW."""
        import torch

        if images.ndim == 4 and images.shape[-1] == 3 and images.shape[1] != 3:
            images = images.permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        return (images.float() - mean) / std

    def normalise_numpy(self, images: np.ndarray) -> np.ndarray:
        """uint8 NHWC RGB -> normalised float32 NCHW, for ONNX Runtime without torch."""
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, 3, 1, 1) * 255.0
        std = np.asarray(self.std, dtype=np.float32).reshape(1, 3, 1, 1) * 255.0
        return (images.transpose(0, 3, 1, 2).astype(np.float32) - mean) / std


def batched_inputs(
    images: FaceArray,
    preprocess: Preprocess,
    batch_size: int,
    channels_last: bool = True,
    flip: bool = False,
    device: torch.device | None = None,
) -> Iterator[torch.Tensor]:
    """Normalised NCHW float batches from uint8 NHWC images, optionally mirrored, on ``device``.

    uint8 images travel to the device and are normalised there: a quarter of the bytes of float batches."""
    import torch

    for start in range(0, len(images), batch_size):
        batch = preprocess.normalise(torch.from_numpy(images[start : start + batch_size]).to(device))
        if flip:
            batch = batch.flip(-1)
        yield batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
