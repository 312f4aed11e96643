"""affectlab: facial affect recognition (8 expressions, valence/arousal).

Importing the package does nothing heavy: each function imports its code on first use.

    >>> import affectlab
    >>> run = affectlab.train("best", data="path/to/affectnet", out="runs/best")   # -> Run
    >>> metrics = affectlab.evaluate("runs/best", split="test")                  # -> Metrics
    >>> study = affectlab.study("reference", data="path/to/affectnet", out="runs/reference")  # -> Study
    >>> predictor = affectlab.load()                     # the bundled affectlab-base; or "runs/best", "model.onnx"
    >>> faces = predictor.predict("photo.jpg")           # one FaceResult per face
    >>> summary = affectlab.predict("runs/best", "photos/", out="faces.jsonl")  # -> PredictSummary
    >>> path = affectlab.export("runs/best")             # -> runs/best/model.onnx
    >>> affectlab.serve(path, port=8000)                 # blocks, serving HTTP and the web page
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from affectlab.version import __version__

__all__ = ["PredictConfig", "__version__", "evaluate", "export", "load", "predict", "serve", "study", "train"]

#: Names served lazily from ``affectlab.api``: train, evaluate and study import torch and Lightning when called.
#: ``export`` and ``serve`` are their packages, made callable (see ``affectlab.verbs``). No module bears the name
#: of an API function (the study module is ``affectlab.studies``): importing it would replace the function.
_API = ("train", "evaluate", "study", "predict", "PredictConfig")

if TYPE_CHECKING:
    from pathlib import Path

    from affectlab.api import PredictConfig, evaluate, export, predict, serve, study, train
    from affectlab.runtime.predictor import AffectPredictor


def load(path: str | Path | None = None, backend: str = "auto", **kwargs: Any) -> AffectPredictor:
    """Load a trained run folder, checkpoint, ``.onnx`` file or named model as a predictor (no path: the bundled
    ``affectlab-base``); see ``affectlab.runtime.predictor.load``.

    ``backend``: ``auto`` (ONNX Runtime on the run's ONNX export, made on first use), ``torch`` or ``onnx``; see
    ``affectlab.export.runtime_model``.
    """
    from affectlab.export.runtime_model import load as _load

    return _load(path, backend, **kwargs)


def __getattr__(name: str) -> Any:
    if name in ("export", "serve"):  # callable packages: the same object before and after they are imported
        import importlib

        return importlib.import_module(f"affectlab.{name}")
    if name in _API:
        from affectlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'affectlab' has no attribute {name!r}")
