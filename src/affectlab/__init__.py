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

import sys
import types
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


#: The API functions served lazily from ``affectlab.api``: they import torch and Lightning, only when first used.
_API_FUNCTIONS = ("train", "evaluate", "study")


def __getattr__(name: str) -> Any:
    if name in _API_FUNCTIONS:
        from affectlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'affectlab' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps ``affectlab.study`` the API function once the module ``affectlab.study`` is imported.

    Python's import system sets a submodule as an attribute of its package when it is first imported, and an
    attribute found on the module is never looked up through ``__getattr__``: without this, any call that imported
    ``affectlab.study`` (``affectlab.train`` does) turned ``affectlab.study(...)`` into "'module' object is not
    callable". Modules stay importable by name (``from affectlab.study import Study``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API_FUNCTIONS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
