"""What a model file says about its model, typed: ``ModelMeta``, read and written here and nowhere else.

A checkpoint (``model.pt``) and an exported ONNX file carry the same description: task, class names, V/A range,
preprocessing, flip TTA, the network's config, and (from version 2) the confidence calibration fitted on the
validation split. Readers get attributes instead of dict keys, so a misspelt field fails in the type checker,
not at a user's site. ``META_VERSION`` numbers the layout; files written before it existed (no ``meta_version``)
are version 1 and still load: their flip TTA is read from the training config, and they have no calibration.

No torch here: ONNX-only inference reads this module without loading PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from affectlab.config import DEMO_DATA, ModelConfig
from affectlab.data.transforms import Preprocess
from affectlab.errors import AffectlabError
from affectlab.labels import EMOTIONS, VA_RANGE

__all__ = [
    "CALIBRATION_KEY",
    "CARD_KEYS",
    "CHECKPOINT_FORMAT",
    "META_VERSION",
    "ONNX_FORMAT",
    "SET_METHODS",
    "Calibration",
    "ModelMeta",
]

#: The file kinds; unchanged since version 1, so older affectlab releases still open newer files.
CHECKPOINT_FORMAT = "affectlab-checkpoint-v1"
ONNX_FORMAT = "affectlab-onnx-v1"
#: Layout of the metadata. 1: no ``meta_version`` key (before ModelMeta). 2: ``tta_flip`` and ``confidence_calibration``.
META_VERSION = 2
#: Where the confidence calibration is stored (``calibration`` alone names the int8 calibration images in ONNX).
CALIBRATION_KEY = "confidence_calibration"
#: Conformal class-set scores: adaptive prediction sets (Romano et al. 2020), without randomisation.
SET_METHODS = ("aps",)
#: What a model file may record about its own training for its card, where no run folder is beside it (the bundled
#: model: ``tools/build_bundled.py`` writes them into ``extra``; an ONNX export of it carries them in ``export``).
CARD_KEYS = ("training_data", "test_metrics")
#: Keys of the version-1 ``meta`` dict with a field of their own; every other key stays in ``extra``.
_RUN_KEYS = ("config", "best_epoch", "history")


@dataclass(frozen=True)
class Calibration:
    """Confidence calibration fitted on the validation split after model selection (never on test).

    ``temperature`` divides the expression logits before the softmax. ``set_threshold`` is the split-conformal
    quantile of the APS score at ``coverage``: a face's prediction set holds the most probable classes until
    their calibrated probabilities add up to it. ``va_halfwidth`` is the conformal quantile of the absolute
    valence and arousal error: the intervals are the prediction plus and minus it (the model predicts no spread,
    so the width is constant). Each part is None when the model has no such head or it was not fitted.
    """

    temperature: float | None = None
    coverage: float | None = None
    set_method: str = "aps"
    set_threshold: float | None = None
    va_halfwidth: tuple[float, float] | None = None
    n: int = 0  # validation faces it was fitted on

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "coverage": self.coverage,
            "set_method": self.set_method,
            "set_threshold": self.set_threshold,
            "va_halfwidth": None if self.va_halfwidth is None else list(self.va_halfwidth),
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Calibration:
        method = str(values.get("set_method", "aps"))
        if method not in SET_METHODS:
            raise ValueError(f"unknown set method {method!r}")
        halfwidth = values.get("va_halfwidth")
        return cls(
            temperature=_float_or_none(values.get("temperature")),
            coverage=_float_or_none(values.get("coverage")),
            set_method=method,
            set_threshold=_float_or_none(values.get("set_threshold")),
            va_halfwidth=None if halfwidth is None else (float(halfwidth[0]), float(halfwidth[1])),
            n=int(values.get("n", 0)),
        )


@dataclass(frozen=True)
class ModelMeta:
    """Everything in a model file but the weights.

    ``model`` is the network's config (None in ONNX files exported without one). ``config``, ``best_epoch`` and
    ``history`` describe the training run (checkpoints only); ``extra`` holds any other value a caller stored
    with a checkpoint. ``export`` says how an ONNX file was made (quantisation and its check) and
    ``affectlab_version`` which release wrote it.
    """

    task: str
    preprocess: Preprocess
    model: ModelConfig | None = None
    class_names: tuple[str, ...] = EMOTIONS
    va_range: tuple[float, float] = VA_RANGE
    tta_flip: bool = False
    calibration: Calibration | None = None
    config: dict[str, Any] | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    affectlab_version: str | None = None
    version: int = META_VERSION

    @property
    def trained_on_demo(self) -> bool:
        """Whether the model learnt the synthetic demo faces: its ``demo_data`` record (checkpoint or ONNX), or for a
        file saved before that was recorded, a training config whose ``data.path`` is ``demo``."""
        for recorded in (self.extra, self.export):
            if "demo_data" in recorded:
                return bool(recorded["demo_data"])
        return bool(((self.config or {}).get("data") or {}).get("path") == DEMO_DATA)

    @property
    def card(self) -> dict[str, Any]:
        """The ``CARD_KEYS`` this file records (checkpoint ``extra`` or ONNX ``export``); empty for a run's model."""
        return {k: v for recorded in (self.extra, self.export) for k, v in recorded.items() if k in CARD_KEYS}

    def with_calibration(self, calibration: Calibration | None) -> ModelMeta:
        return replace(self, calibration=calibration)

    # -- checkpoints -------------------------------------------------------------------------------------------

    def to_checkpoint(self) -> dict[str, Any]:
        """The checkpoint bundle without its ``state_dict``; the version-1 keys keep their place and meaning."""
        if self.model is None:
            raise ValueError("a checkpoint needs the model config")
        run: dict[str, Any] = {
            k: v for k, v in (("config", self.config), ("best_epoch", self.best_epoch)) if v is not None
        }
        if self.history:
            run["history"] = self.history
        return {
            "format": CHECKPOINT_FORMAT,
            "meta_version": META_VERSION,
            "model": {**self.model.__dict__},
            "task": self.task,
            "class_names": list(self.class_names),
            "va_range": list(self.va_range),
            "preprocess": self.preprocess.to_dict(),
            "tta_flip": self.tta_flip,
            CALIBRATION_KEY: None if self.calibration is None else self.calibration.to_dict(),
            "meta": {**run, **self.extra},
        }

    @classmethod
    def from_checkpoint(cls, bundle: dict[str, Any]) -> ModelMeta:
        """Read a checkpoint bundle of any version; raises KeyError/TypeError/ValueError when it is damaged."""
        version = _version(bundle)
        run = dict(bundle.get("meta") or {})
        config = run.pop("config", None)
        best_epoch = run.pop("best_epoch", None)
        history = run.pop("history", None) or []
        return cls(
            task=str(bundle["task"]),
            preprocess=Preprocess.from_dict(bundle["preprocess"]),
            model=ModelConfig(**bundle["model"]),
            class_names=tuple(bundle["class_names"]),
            va_range=_va_range(bundle["va_range"]),
            tta_flip=bool(bundle["tta_flip"]) if version >= 2 else _config_tta_flip(config),
            calibration=_calibration(bundle.get(CALIBRATION_KEY)),
            config=config,
            best_epoch=None if best_epoch is None else int(best_epoch),
            history=list(history),
            extra=run,
            version=version,
        )

    # -- ONNX ----------------------------------------------------------------------------------------------------

    def to_onnx(self) -> dict[str, Any]:
        """The JSON bundle stored in an ONNX file's metadata (no training history: the run folder keeps it)."""
        from affectlab.version import __version__

        return {
            "format": ONNX_FORMAT,
            "meta_version": META_VERSION,
            "task": self.task,
            "class_names": list(self.class_names),
            "va_range": list(self.va_range),
            "preprocess": self.preprocess.to_dict(),
            "model": {} if self.model is None else {**self.model.__dict__},
            "tta_flip": self.tta_flip,
            CALIBRATION_KEY: None if self.calibration is None else self.calibration.to_dict(),
            "affectlab_version": __version__,
            **self.export,
        }

    @classmethod
    def from_onnx(cls, bundle: dict[str, Any]) -> ModelMeta:
        """Read the metadata bundle of an exported file of any version (version 1 stored ``tta_flip`` too)."""
        version = _version(bundle)
        known = {"format", "meta_version", "task", "class_names", "va_range", "preprocess", "model", "tta_flip"}
        known |= {CALIBRATION_KEY, "affectlab_version", "input", "input_layout"}
        model = bundle.get("model") or None
        return cls(
            task=str(bundle["task"]),
            preprocess=Preprocess.from_dict(bundle["preprocess"]),
            model=None if model is None else ModelConfig(**model),
            class_names=tuple(bundle["class_names"]),
            va_range=_va_range(bundle["va_range"]),
            tta_flip=bool(bundle.get("tta_flip", False)),
            calibration=_calibration(bundle.get(CALIBRATION_KEY)) if version >= 2 else None,
            export={k: v for k, v in bundle.items() if k not in known},
            affectlab_version=bundle.get("affectlab_version"),
            version=version,
        )


def _version(bundle: dict[str, Any]) -> int:
    version = int(bundle.get("meta_version", 1))
    if version > META_VERSION:
        raise AffectlabError(
            f"model metadata version {version} is newer than this affectlab reads ({META_VERSION}); upgrade affectlab"
        )
    return version


def _config_tta_flip(config: dict[str, Any] | None) -> bool:
    """Version 1: the run's ``train.tta_flip``; checkpoints without a training config (made by hand) have none."""
    return bool((config or {}).get("train", {}).get("tta_flip", False))


def _calibration(values: dict[str, Any] | None) -> Calibration | None:
    return None if values is None else Calibration.from_dict(values)


def _va_range(values: Any) -> tuple[float, float]:
    low, high = values
    return float(low), float(high)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
