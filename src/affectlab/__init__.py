"""affectlab: facial affect recognition (8 expressions, valence/arousal).

Importing the package does nothing heavy: ``load`` imports the inference code on first use.

    >>> import affectlab
    >>> predictor = affectlab.load("runs/my-run")          # or "model.onnx"
    >>> faces = predictor.predict("photo.jpg")              # one FaceResult per face
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load", "__version__"]

if TYPE_CHECKING:
    from pathlib import Path

    from affectlab.inference.predictor import AffectPredictor


def load(path: str | Path, **kwargs: Any) -> AffectPredictor:
    """Load a trained run folder, checkpoint or ``.onnx`` file as a predictor; see ``affectlab.inference.load``."""
    from affectlab.inference.predictor import load as _load

    return _load(path, **kwargs)
