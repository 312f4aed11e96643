"""Checks of the command line's values that run before torch, OpenCV or the model zoo are imported.

Importing PyTorch and torchvision takes seconds; a mistyped backbone, detector, recipe or path should be answered
in a fraction of one. ``preflight`` therefore resolves a training config (which needs only YAML) and checks names
against the names-only registries (``models/backbone_names.py``, ``runtime/detector_names.py``) and paths
against the file system. The deeper layers still check everything again for Python API users.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from affectlab.config import DEMO_DATA, RunConfig, resolve_config
from affectlab.data.suffixes import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from affectlab.errors import AffectlabError
from affectlab.models.backbone_names import check_backbone_names
from affectlab.models.registry import is_model_reference, named_model, resolve_model
from affectlab.runtime.detector_names import check_detector_name

__all__ = ["predict_model_and_inputs", "preflight"]

#: The argument naming a trained model, per command, and what its absence is called (as the loaders call it).
MODEL_ARGUMENT = {
    "predict": ("model", "model"),
    "evaluate": ("run_dir", "run folder"),
    "export": ("run_dir", "model file"),
}


def preflight(args: argparse.Namespace, overrides: Callable[[argparse.Namespace], dict[str, Any]]) -> RunConfig | None:
    """Refuse a wrong value of ``args`` in one line; for ``train`` and ``study`` return the resolved config.

    ``overrides`` turns the parsed flags into ``{"section.key": value}`` (the CLI's own mapping).
    """
    if getattr(args, "detector", None) is not None:
        check_detector_name(args.detector)
    if args.command == "predict":
        args.model, args.inputs = predict_model_and_inputs(args.paths, args.model)
    # serve checks its options and bind address first, then its model; a predict with no input is the API's to say
    nothing_to_predict = args.command == "predict" and not args.inputs and args.webcam is None
    if args.command in MODEL_ARGUMENT and not nothing_to_predict:
        name, what = MODEL_ARGUMENT[args.command]
        _check_model(getattr(args, name), f"{what} not found")
    if args.command not in ("train", "study"):
        if args.command == "evaluate" and args.data not in (None, DEMO_DATA):
            _must_exist(args.data, "no such file or folder")
        return None
    cfg = resolve_config(args.recipe, overrides(args), args.overrides)
    check_backbone_names([cfg.model.backbone, *cfg.study.backbones])
    if cfg.data.path != DEMO_DATA and "://" not in cfg.data.path:  # remote shards (s3://...) are read later
        _must_exist(cfg.data.path, "no such file or folder (--data takes a folder, an AffectNet CSV file, or 'demo')")
    if cfg.data.split_file is not None:
        _must_exist(cfg.data.split_file, "split file not found")
    return cfg


def predict_model_and_inputs(paths: list[str], model: str | None) -> tuple[str | None, list[str]]:
    """``affectlab predict [MODEL] INPUT...``: the model (None: the bundled one) and the inputs.

    With ``--model`` every path is an input. Otherwise the first path is the model when it plainly is one (a
    named model, a ``.pt`` or ``.onnx`` file, a run or study folder), or when more paths follow and it is not an
    image, a video or a folder: ``affectlab predict runs/best photo.jpg`` reads as it always did, and
    ``affectlab predict photo.jpg`` (or ``photos/``) uses the bundled model.
    """
    if model is not None or not paths:
        return model, list(paths)
    first = paths[0]
    path = Path(first).expanduser()
    is_input = path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES or path.is_dir()
    if is_model_reference(first) or (len(paths) > 1 and not is_input):
        return first, list(paths[1:])
    return None, list(paths)


def _check_model(model: str | None, problem: str) -> None:
    """A named model (None: the default) is checked here as it will be when loaded; a path must exist."""
    if named_model(model) is not None:
        resolve_model(model)
    else:
        assert model is not None
        _must_exist(model, problem)


def _must_exist(path: str, problem: str) -> None:
    if not Path(path).expanduser().exists():
        raise AffectlabError(f"{path}: {problem}")
