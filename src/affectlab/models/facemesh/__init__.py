"""MediaPipe FaceMesh, converted into affectlab's own PyTorch module, with its weights in the package.

``load_facemesh()`` builds ``FaceMeshNet`` from ``face_landmark.pt`` after checking the file's SHA-256, so a
damaged or replaced file is refused with one line instead of giving wrong landmarks. ``canonical_face()`` is
MediaPipe's canonical face mesh (468 vertices, centimetres, y up, z towards the viewer), the reference that head
pose is measured against. See ``MODEL_CARD.md`` beside this file for source, licence and conventions.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import numpy as np
import torch

from affectlab.errors import AffectlabError
from affectlab.models.facemesh.network import INPUT_SIZE, N_LANDMARKS, FaceMeshNet

__all__ = ["INPUT_SIZE", "N_LANDMARKS", "WEIGHTS", "FaceMeshNet", "canonical_face", "load_facemesh"]

HERE = Path(__file__).resolve().parent
#: The packaged weights and their SHA-256 (written by ``tools/convert_facemesh.py``).
WEIGHTS = HERE / "face_landmark.pt"
WEIGHTS_SHA256 = "3cce18b79a0eec4d451d14094b145c4d9e9138c780eae0bd356b7b45aae17932"
CANONICAL = HERE / "canonical_face.npy"
CANONICAL_SHA256 = "950c7a131b14aade2fc241c24ce9c5ef3f9d8b2a7d9f47a621bace5f104acfc7"


def _verified(path: Path, sha256: str) -> Path:
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise AffectlabError(
            f"{path}: FaceMesh file missing or unreadable ({exc.strerror}); reinstall affectlab"
        ) from None
    if digest != sha256:
        raise AffectlabError(
            f"{path}: SHA-256 {digest[:12]}... is not the packaged {sha256[:12]}...; reinstall affectlab"
        )
    return path


def load_facemesh(path: Path = WEIGHTS, sha256: str = WEIGHTS_SHA256) -> FaceMeshNet:
    """The FaceMesh network with its converted weights, in eval mode (call ``.train()`` to fine-tune)."""
    net = FaceMeshNet()
    net.load_state_dict(torch.load(_verified(path, sha256), map_location="cpu", weights_only=True))
    return net.eval()


@cache
def canonical_face() -> np.ndarray:
    """468 x 3 float64: MediaPipe's canonical face mesh, in landmark order."""
    return np.load(_verified(CANONICAL, CANONICAL_SHA256)).astype(np.float64)
