"""The affectlab checkpoint: weights plus everything needed to use them.

One file holds the state dict and the model's ``ModelMeta`` (model config, the 8 label names, the V/A range,
the preprocessing, flip TTA, the confidence calibration, the training config and history), so that
``load_checkpoint`` can rebuild and use a model with no other file and no network.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from affectlab.atomic import atomic_write
from affectlab.config import ModelConfig
from affectlab.data.transforms import Preprocess
from affectlab.errors import AffectlabError
from affectlab.models.affect_model import AffectModel, create_model
from affectlab.models.meta import CHECKPOINT_FORMAT, Calibration, ModelMeta
from affectlab.models.registry import resolve_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "checkpoint_bytes",
    "checkpoint_meta",
    "load_checkpoint",
    "save_calibration",
    "save_checkpoint",
    "save_face_crop",
]


def checkpoint_meta(
    model_config: ModelConfig,
    preprocess: Preprocess,
    config: dict[str, Any] | None = None,
    best_epoch: int | None = None,
    history: list[dict[str, Any]] | None = None,
    calibration: Calibration | None = None,
    **extra: Any,
) -> ModelMeta:
    """Everything in a checkpoint but the weights: what ``load_checkpoint`` returns beside the model.

    Flip TTA follows the training config's ``train.tta_flip`` (predictions then average the image and its
    mirror exactly as evaluation did); ``extra`` keeps any other value with the checkpoint.
    """
    tta_flip = bool((config or {}).get("train", {}).get("tta_flip", False))
    return ModelMeta(
        task=model_config.task,
        preprocess=preprocess,
        model=model_config,
        tta_flip=tta_flip,
        calibration=calibration,
        config=config,
        best_epoch=best_epoch,
        history=list(history or []),
        extra=extra,
    )


def save_checkpoint(
    path: str | Path, model: AffectModel, model_config: ModelConfig, preprocess: Preprocess, **meta: Any
) -> Path:
    """Write ``model.pt``; ``meta`` takes ``checkpoint_meta``'s keywords."""
    return _write(path, model.state_dict(), checkpoint_meta(model_config, preprocess, **meta))


def save_calibration(path: str | Path, calibration: Calibration | None) -> Path:
    """Store a calibration fitted after training in an existing checkpoint (rewritten atomically)."""
    bundle = _read(Path(path))
    meta = ModelMeta.from_checkpoint(bundle)
    return _write(path, bundle["state_dict"], meta.with_calibration(calibration))


def save_face_crop(path: str | Path, margin: float, shift: tuple[float, float]) -> Path:
    """Store the crop protocol fitted after training (``runtime.crop_fit``) in an existing checkpoint."""
    bundle = _read(Path(path))
    meta = ModelMeta.from_checkpoint(bundle)
    preprocess = replace(meta.preprocess, face_margin=margin, face_shift=shift)
    return _write(path, bundle["state_dict"], replace(meta, preprocess=preprocess))


def checkpoint_bytes(model: AffectModel, meta: ModelMeta, half: bool = False) -> bytes:
    """A checkpoint as bytes, to check its size and hash before it is written anywhere. With ``half`` the floating
    weights are stored in half precision: half the size (the bundled model's 12 MB limit), and ``load_checkpoint``
    copies them back into the float32 network, so older affectlab releases read the file too."""
    import io

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    buffer = io.BytesIO()
    torch.save({**meta.to_checkpoint(), "state_dict": state}, buffer)
    return buffer.getvalue()


def load_checkpoint(path: str | Path | None) -> tuple[AffectModel, ModelMeta]:
    """Rebuild a model from a checkpoint file, a run folder (``model.pt`` inside it) or a named model (None: the
    default one; see ``models.registry``), in eval mode. Half-precision weights (the bundled file's) are loaded
    back into the float32 network."""
    path = resolve_model(path)
    if path.is_dir():
        _refuse_study_folder(path)
        path = path / "model.pt"
    model, meta = _parse(path, _read(path))
    model.eval()
    return model, meta


def _write(path: str | Path, state_dict: dict[str, torch.Tensor], meta: ModelMeta) -> Path:
    bundle = {**meta.to_checkpoint(), "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}
    return atomic_write(path, lambda p: torch.save(bundle, p))


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise AffectlabError(f"{path}: model file not found")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file can fail in many ways
        raise AffectlabError(f"{path}: not an affectlab checkpoint ({type(exc).__name__})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != CHECKPOINT_FORMAT:
        found = bundle.get("format") if isinstance(bundle, dict) else type(bundle).__name__
        raise AffectlabError(f"{path}: not an affectlab checkpoint (format {found!r})")
    return bundle


def _parse(path: Path, bundle: dict[str, Any]) -> tuple[AffectModel, ModelMeta]:
    try:  # a damaged or hand-edited bundle: unknown keys, wrong shapes, missing entries
        meta = ModelMeta.from_checkpoint(bundle)
        assert meta.model is not None
        model = create_model(ModelConfig(**{**meta.model.__dict__, "weights": "none"}))
        model.load_state_dict(bundle["state_dict"])
    except AffectlabError as exc:  # e.g. metadata newer than this release reads
        raise AffectlabError(f"{path}: {exc}") from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise AffectlabError(f"{path}: damaged affectlab checkpoint ({type(exc).__name__}: {first})") from None
    return model, meta


def _refuse_study_folder(folder: Path) -> None:
    """A folder without ``model.pt`` whose sub-folders hold models (a study's): name them, as the user meant one."""
    if (folder / "model.pt").exists():
        return
    models = sorted(str(p.parent) for p in folder.glob("*/model.pt"))
    if models:
        raise AffectlabError(f"{folder} is a study folder; give one of its models: {', '.join(models)}")
