"""affectlab: facial affect recognition (8 expressions, valence/arousal).

Importing the package does nothing heavy: each function imports its code on first use.

    >>> import affectlab
    >>> run = affectlab.train("best", data="path/to/affectnet", out="runs/best")   # -> Run
    >>> metrics = affectlab.evaluate("runs/best", split="test")                  # -> Metrics
    >>> study = affectlab.study("reference", data="path/to/affectnet", out="runs/reference")  # -> Study
    >>> predictor = affectlab.load("runs/best")          # or "model.onnx"
    >>> faces = predictor.predict("photo.jpg")           # one FaceResult per face
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from affectlab.version import __version__

__all__ = ["__version__", "evaluate", "load", "study", "train"]

if TYPE_CHECKING:
    from pathlib import Path

    from affectlab.api import evaluate, study, train
    from affectlab.runtime.predictor import AffectPredictor


def load(path: str | Path, **kwargs: Any) -> AffectPredictor:
    """Load a trained run folder, checkpoint or ``.onnx`` file as a predictor; see ``affectlab.runtime.predictor.load``."""
    from affectlab.runtime.predictor import load as _load

    return _load(path, **kwargs)


def __getattr__(name: str) -> Any:
    # train, evaluate and study import torch and Lightning; only when first used.
    if name in ("train", "evaluate", "study"):
        from affectlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'affectlab' has no attribute {name!r}")
