"""Using trained models: face detection and crops, the predictor (PyTorch or ONNX Runtime), results, video.

Nothing is imported until used; ``affectlab.load`` is the entry point for most users. This package imports
neither ``export``, ``serve`` nor ``batch`` (the layers contract in ``pyproject.toml`` checks it).
"""

from __future__ import annotations

from typing import Any

__all__ = ["AffectPredictor", "FaceResult", "ImageResult", "load"]

_LAZY = {
    "load": "affectlab.runtime.predictor",
    "AffectPredictor": "affectlab.runtime.predictor",
    "FaceResult": "affectlab.runtime.results",
    "ImageResult": "affectlab.runtime.results",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'affectlab.runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
