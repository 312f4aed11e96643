"""MediaPipe FaceMesh, converted into affectlab's own PyTorch module, with its weights in the package.

``load_facemesh()`` builds ``FaceMeshNet`` from ``face_landmark.pt`` after checking the file's SHA-256, so a
damaged or replaced file is refused with one line instead of giving wrong landmarks. ``canonical_face()`` is
MediaPipe's canonical face mesh (468 vertices, centimetres, y up, z towards the viewer), the reference that head
pose is measured against. See ``MODEL_CARD.md`` beside this file for source, licence and conventions.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np

from affectlab.models.facemesh.network import INPUT_SIZE, N_LANDMARKS, FaceMeshNet
from affectlab.models.packaged import packaged_bytes, packaged_state_dict

__all__ = ["INPUT_SIZE", "N_LANDMARKS", "WEIGHTS", "FaceMeshNet", "canonical_face", "load_facemesh"]

HERE = Path(__file__).resolve().parent
#: The packaged weights and their SHA-256 (written by ``tools/convert_facemesh.py``).
WEIGHTS = HERE / "face_landmark.pt"
WEIGHTS_SHA256 = "3cce18b79a0eec4d451d14094b145c4d9e9138c780eae0bd356b7b45aae17932"
CANONICAL = HERE / "canonical_face.npy"
CANONICAL_SHA256 = "950c7a131b14aade2fc241c24ce9c5ef3f9d8b2a7d9f47a621bace5f104acfc7"


def load_facemesh(path: Path = WEIGHTS, sha256: str = WEIGHTS_SHA256) -> FaceMeshNet:
    """The FaceMesh network with its converted weights, in eval mode (call ``.train()`` to fine-tune)."""
    net = FaceMeshNet()
    net.load_state_dict(packaged_state_dict(path, sha256, "FaceMesh file"))
    return net.eval()


@cache
def canonical_face() -> np.ndarray:
    """468 x 3 float64: MediaPipe's canonical face mesh, in landmark order."""
    return np.load(io.BytesIO(packaged_bytes(CANONICAL, CANONICAL_SHA256, "FaceMesh file"))).astype(np.float64)
