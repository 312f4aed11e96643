"""Typed run configuration, resolved once and saved with every run.

A recipe file (``recipes/*.yaml``) and the CLI flags both fill these dataclasses; the resolved result is written
into the run folder as ``config.yaml`` so a run can always be explained and repeated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from affectlab.errors import AffectlabError

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "RunConfig", "TASKS", "load_recipe", "config_from_dict"]

TASKS = ("classification", "regression", "multitask")


@dataclass
class DataConfig:
    """Where the data is and how it is split."""

    path: str = "demo"
    layout: str = "auto"  # auto | affectnet | csv | folders
    image_root: str | None = None  # for the CSV layout; defaults to the CSV's folder
    class_map: dict[str, str] = field(default_factory=dict)  # folder name -> emotion name, for class folders
    on_bad_sample: str = "skip"  # skip | error
    split_seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_file: str | None = None


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network; stored in every checkpoint."""

    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"  # imagenet | none | PATH to a torchvision state dict
    task: str = "classification"
    freeze: bool = True
    input_size: int = 128
    hidden: int = 256
    dropout: float = 0.5


@dataclass
class TrainConfig:
    """Optimisation settings. Defaults reproduce the reference study."""

    epochs: int = 12
    batch_size: int = 32
    optimizer: str = "adam"  # adam | adamw
    lr: float = 1e-3
    backbone_lr: float | None = None  # None: same as lr (only used when the backbone trains)
    weight_decay: float = 0.0
    scheduler: str = "none"  # none | cosine | onecycle
    warmup_epochs: float = 0.0
    patience: int = 4  # early stopping on the monitored validation metric; best weights are restored
    monitor: str = "val_loss"  # val_loss | val_accuracy | val_ccc | val_score (accuracy + mean V/A CCC)
    class_weights: str = "balanced"  # balanced | none
    sampler: str = "none"  # none | balanced (class-balanced sampling instead of class weights)
    label_smoothing: float = 0.0
    va_loss: str = "mse"  # mse | ccc | mse+ccc
    expression_loss_weight: float = 1.0
    va_loss_weight: float = 1.0
    unfreeze_at_epoch: int | None = None  # gradual unfreezing: backbone frozen until this epoch
    augment: bool = False  # flip, small affine, colour jitter, random erasing
    tta_flip: bool = False  # average predictions over the image and its mirror at evaluation
    ema_decay: float | None = None
    channels_last: bool = True
    cache_features: bool = True  # frozen backbone and no augmentation: pool features once, train the head
    seed: int = 0
    precision: str = "auto"  # auto: 16-mixed on GPU, 32 on CPU
    num_workers: int = 0


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _fill(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise AffectlabError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return cls(**values)


def config_from_dict(values: dict[str, Any], where: str = "config") -> RunConfig:
    """Build a RunConfig from nested dicts, rejecting unknown keys with the file and key named."""
    if not isinstance(values, dict):
        raise AffectlabError(f"{where}: expected a mapping with sections data/model/train")
    unknown = sorted(set(values) - {"data", "model", "train", "name", "description"})
    if unknown:
        raise AffectlabError(f"{where}: unknown section(s) {', '.join(unknown)}; known: data, model, train")
    cfg = RunConfig(
        data=_fill(DataConfig, values.get("data") or {}, f"{where} [data]"),
        model=_fill(ModelConfig, values.get("model") or {}, f"{where} [model]"),
        train=_fill(TrainConfig, values.get("train") or {}, f"{where} [train]"),
    )
    validate(cfg, where)
    return cfg


def validate(cfg: RunConfig, where: str = "config") -> None:
    """Reject impossible settings early, before any data is read."""
    choices = {
        ("model", "task"): TASKS,
        ("data", "layout"): ("auto", "affectnet", "csv", "folders"),
        ("data", "on_bad_sample"): ("skip", "error"),
        ("train", "optimizer"): ("adam", "adamw"),
        ("train", "scheduler"): ("none", "cosine", "onecycle"),
        ("train", "class_weights"): ("balanced", "none"),
        ("train", "sampler"): ("none", "balanced"),
        ("train", "va_loss"): ("mse", "ccc", "mse+ccc"),
        ("train", "precision"): ("auto", "32", "16-mixed", "bf16-mixed"),
        ("train", "monitor"): ("val_loss", "val_accuracy", "val_ccc", "val_score"),
    }
    for (section, key), allowed in choices.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise AffectlabError(f"{where}: {section}.{key}={value!r} is not one of {', '.join(allowed)}")
    if cfg.model.input_size < 32:
        raise AffectlabError(f"{where}: model.input_size={cfg.model.input_size} is too small (minimum 32)")
    fractions = cfg.data.val_fraction + cfg.data.test_fraction
    if not 0 < fractions < 1:
        raise AffectlabError(f"{where}: val_fraction + test_fraction must be between 0 and 1")


def load_recipe(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise AffectlabError(f"{path}: recipe file not found")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AffectlabError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return config_from_dict(values, str(path))
