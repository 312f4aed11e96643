"""MediaPipe Iris, converted into affectlab's own PyTorch module, with its weights in the package.

``load_iris()`` builds ``IrisNet`` from ``iris_landmark.pt`` after checking the file's SHA-256 (as
``load_facemesh`` does), so a damaged or replaced file is refused with one line instead of giving wrong eye points.
See ``MODEL_CARD.md`` beside this file for source, licence and conventions, and ``affectlab.runtime.eyes`` for
how the eyes are cropped from FaceMesh's landmarks.
"""

from __future__ import annotations

from pathlib import Path

from affectlab.models.iris.network import INPUT_SIZE, N_CONTOUR, N_IRIS, IrisNet
from affectlab.models.packaged import packaged_state_dict

__all__ = ["INPUT_SIZE", "N_CONTOUR", "N_IRIS", "WEIGHTS", "IrisNet", "load_iris"]

#: The packaged weights and their SHA-256 (written by ``tools/convert_iris.py``).
WEIGHTS = Path(__file__).resolve().parent / "iris_landmark.pt"
WEIGHTS_SHA256 = "f2644e0cbdbca81210eaf4d5f16c7faad7751a8a2e4a255350f3fcdd5e8b004b"


def load_iris(path: Path = WEIGHTS, sha256: str = WEIGHTS_SHA256) -> IrisNet:
    """The Iris network with its converted weights, in eval mode (call ``.train()`` to fine-tune)."""
    net = IrisNet()
    net.load_state_dict(packaged_state_dict(path, sha256, "Iris file"))
    return net.eval()
