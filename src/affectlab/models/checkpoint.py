"""The affectlab checkpoint: weights plus everything needed to use them.

One file holds the state dict, the model config, the 8 label names, the valence/arousal range, the
preprocessing (input size, mean/std, face margin), the training config and the validation metrics, so that
``load_checkpoint`` can rebuild and use a model with no other file and no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from affectlab.atomic import atomic_write
from affectlab.config import ModelConfig
from affectlab.data.transforms import Preprocess
from affectlab.errors import AffectlabError
from affectlab.labels import EMOTIONS, VA_RANGE
from affectlab.models.affect_model import AffectModel, create_model

__all__ = ["CHECKPOINT_FORMAT", "checkpoint_meta", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "affectlab-checkpoint-v1"


def checkpoint_meta(model_config: ModelConfig, preprocess: Preprocess, **meta: Any) -> dict[str, Any]:
    """Everything in a checkpoint but the weights: what ``load_checkpoint`` returns beside the model."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": {**model_config.__dict__},
        "task": model_config.task,
        "class_names": list(EMOTIONS),
        "va_range": list(VA_RANGE),
        "preprocess": preprocess.to_dict(),
        "meta": meta,
    }


def save_checkpoint(
    path: str | Path, model: AffectModel, model_config: ModelConfig, preprocess: Preprocess, **meta: Any
) -> Path:
    bundle = {
        **checkpoint_meta(model_config, preprocess, **meta),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return atomic_write(path, lambda p: torch.save(bundle, p))


def load_checkpoint(path: str | Path) -> tuple[AffectModel, dict[str, Any]]:
    """Rebuild a model from a checkpoint file or a run folder (``model.pt`` inside it), in eval mode."""
    path = Path(path)
    if path.is_dir():
        _refuse_study_folder(path)
        path = path / "model.pt"
    if not path.is_file():
        raise AffectlabError(f"{path}: model file not found")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file can fail in many ways
        raise AffectlabError(f"{path}: not an affectlab checkpoint ({type(exc).__name__})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != CHECKPOINT_FORMAT:
        found = bundle.get("format") if isinstance(bundle, dict) else type(bundle).__name__
        raise AffectlabError(f"{path}: not an affectlab checkpoint (format {found!r})")
    try:  # a damaged or hand-edited bundle: unknown keys, wrong shapes, missing entries
        config = ModelConfig(**{**bundle["model"], "weights": "none"})
        model = create_model(config)
        model.load_state_dict(bundle["state_dict"])
        Preprocess.from_dict(bundle["preprocess"])
        meta = {k: v for k, v in bundle.items() if k != "state_dict"}
        meta["task"], meta["class_names"], meta["va_range"] = (
            str(bundle["task"]),
            list(bundle["class_names"]),
            list(bundle["va_range"]),
        )
    except AffectlabError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise AffectlabError(f"{path}: damaged affectlab checkpoint ({type(exc).__name__}: {first})") from None
    model.eval()
    return model, meta


def _refuse_study_folder(folder: Path) -> None:
    """A folder without ``model.pt`` whose sub-folders hold models (a study's): name them, as the user meant one."""
    if (folder / "model.pt").exists():
        return
    models = sorted(str(p.parent) for p in folder.glob("*/model.pt"))
    if models:
        raise AffectlabError(f"{folder} is a study folder; give one of its models: {', '.join(models)}")
