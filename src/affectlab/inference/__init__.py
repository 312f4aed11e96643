"""Using trained models: face detection, batched prediction, video, ONNX export and serving.

Nothing is imported until used; ``affectlab.load`` is the entry point for most users.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AffectPredictor", "FaceResult", "ImageResult", "export_onnx", "load"]

_LAZY = {
    "load": "affectlab.inference.predictor",
    "AffectPredictor": "affectlab.inference.predictor",
    "FaceResult": "affectlab.inference.results",
    "ImageResult": "affectlab.inference.results",
    "export_onnx": "affectlab.inference.onnx_export",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'affectlab.inference' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
