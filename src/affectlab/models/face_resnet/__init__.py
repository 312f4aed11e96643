"""dlib's face-recognition ResNet, converted into affectlab's own PyTorch module, with its weights in the package.

``load_face_resnet()`` builds ``FaceResNet29`` from ``face_resnet29.pt`` (stored in half precision, loaded as
float32) after checking the file's SHA-256, so a damaged or replaced file is refused with one line instead of
giving wrong features. See ``MODEL_CARD.md`` beside this file for source, licence, input convention and accuracy.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from affectlab.models.face_resnet.network import (
    DESCRIPTOR_DIM,
    FEATURE_DIM,
    INPUT_SIZE,
    MEAN_RGB,
    MIN_INPUT_SIZE,
    FaceResNet29,
)
from affectlab.models.packaged import packaged_bytes

__all__ = [
    "DESCRIPTOR_DIM",
    "FEATURE_DIM",
    "INPUT_SIZE",
    "MEAN_RGB",
    "MIN_INPUT_SIZE",
    "WEIGHTS",
    "FaceResNet29",
    "load_face_resnet",
]

HERE = Path(__file__).resolve().parent
#: The packaged weights (float16) and their SHA-256 (written by ``tools/convert_dlib_face.py``).
WEIGHTS = HERE / "face_resnet29.pt"
WEIGHTS_SHA256 = "6de4b70734d44d81f28a4f2d402dae1e0c1c7a68c9a3e8bb04270d4e154a08c0"


def load_face_resnet(path: Path = WEIGHTS, sha256: str = WEIGHTS_SHA256) -> FaceResNet29:
    """The network with dlib's weights in float32, in eval mode (call ``.train()`` to fine-tune)."""
    data = packaged_bytes(path, sha256, "face ResNet weights")
    net = FaceResNet29()
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    net.load_state_dict(state)  # copies the float16 values into the float32 parameters
    return net.eval()
