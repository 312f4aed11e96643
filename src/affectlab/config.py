"""Typed run configuration, resolved once and saved with every run.

A recipe file (``recipes/*.yaml``) and the CLI flags both fill these dataclasses; the resolved result is written
into the run folder as ``config.yaml`` so a run can always be explained and repeated.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from affectlab.errors import AffectlabError

__all__ = [
    "DataConfig", "ModelConfig", "TrainConfig", "RunConfig", "TASKS", "load_recipe", "config_from_dict",
    "parse_overrides", "with_overrides",
]

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
    max_bad_fraction: float = 0.5  # stop before training when a larger share of the samples cannot be read


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
    precision: str = "auto"  # auto: bf16-mixed on GPUs that have it, else 16-mixed; 32 on CPU
    num_workers: int = 0  # loader processes; 0 on a 2-core CPU, several on a GPU machine (--set train.num_workers=8)
    # Where and on how many devices to train (Lightning's Trainer arguments). One device by default, so that a
    # machine with several GPUs never starts DDP unasked; --devices 8 --strategy ddp asks for it.
    accelerator: str = "auto"  # auto | cpu | gpu | cuda | mps
    devices: int = 1  # per node; -1 means all
    num_nodes: int = 1  # several nodes: launch under torchrun or srun, which Lightning detects
    strategy: str = "auto"  # auto | ddp | ddp_find_unused_parameters_true
    sync_batchnorm: bool = False  # BatchNorm statistics over all ranks' batches (small per-device batches)


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
    if not isinstance(values, dict):
        raise AffectlabError(f"{where}: expected a mapping of options, found {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in set(values) - set(known))
    if unknown:
        raise AffectlabError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return cls(**values)


def config_from_dict(values: dict[str, Any], where: str = "config") -> RunConfig:
    """Build a RunConfig from nested dicts, rejecting unknown keys with the file and key named."""
    if not isinstance(values, dict):
        raise AffectlabError(f"{where}: expected a mapping with sections data/model/train")
    unknown = sorted(str(key) for key in set(values) - {"data", "model", "train", "name", "description"})
    if unknown:
        raise AffectlabError(f"{where}: unknown section(s) {', '.join(unknown)}; known: data, model, train")
    cfg = RunConfig(
        data=_fill(DataConfig, values.get("data") or {}, f"{where} [data]"),
        model=_fill(ModelConfig, values.get("model") or {}, f"{where} [model]"),
        train=_fill(TrainConfig, values.get("train") or {}, f"{where} [train]"),
    )
    validate(cfg, where)
    return cfg


def _type_ok(value: Any, hint: Any) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typing.get_origin(hint) or hint)


def _check_types(cfg: RunConfig, where: str) -> None:
    """A recipe or --set value of the wrong type (input_size: big) is named here, not deep inside training."""
    for section in ("data", "model", "train"):
        part = getattr(cfg, section)
        hints = typing.get_type_hints(type(part))
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if not _type_ok(value, hints[f.name]):
                expected = str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
                raise AffectlabError(f"{where}: {section}.{f.name}={value!r} should be of type {expected}")


def validate(cfg: RunConfig, where: str = "config") -> None:
    """Reject impossible settings early, before any data is read."""
    _check_types(cfg, where)
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
        ("train", "accelerator"): ("auto", "cpu", "gpu", "cuda", "mps"),
        ("train", "strategy"): ("auto", "ddp", "ddp_find_unused_parameters_true"),
    }
    for (section, key), allowed in choices.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise AffectlabError(f"{where}: {section}.{key}={value!r} is not one of {', '.join(allowed)}")
    if cfg.model.input_size < 32:
        raise AffectlabError(f"{where}: model.input_size={cfg.model.input_size} is too small (minimum 32)")
    if not 0 <= cfg.data.max_bad_fraction <= 1:
        raise AffectlabError(f"{where}: data.max_bad_fraction={cfg.data.max_bad_fraction} must be between 0 and 1")
    if cfg.train.devices == 0 or cfg.train.devices < -1 or cfg.train.num_nodes < 1:
        raise AffectlabError(f"{where}: train.devices must be -1 (all) or at least 1, and train.num_nodes at least 1")
    fractions = cfg.data.val_fraction + cfg.data.test_fraction
    if not 0 < fractions < 1:
        raise AffectlabError(f"{where}: val_fraction + test_fraction must be between 0 and 1")


def load_recipe(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise AffectlabError(f"{path}: recipe file not found")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:  # an unsafe tag (!!python/object) is a YAMLError too
        raise AffectlabError(f"{path}: not valid YAML ({str(exc).splitlines()[0][:160]})") from None
    return config_from_dict(values, str(path))


def parse_overrides(items: list[str] | None, where: str = "--set") -> dict[str, Any]:
    """``section.key=value`` strings (values read as YAML, so 224, 0.1, true and null mean what they say)."""
    overrides: dict[str, Any] = {}
    sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
    for item in items or []:
        dotted, sep, text = item.partition("=")
        section, dot, key = dotted.strip().partition(".")
        if not sep or not dot:
            raise AffectlabError(f"{where} {item!r}: expected SECTION.KEY=VALUE, e.g. train.num_workers=8")
        if section not in sections:
            raise AffectlabError(f"{where} {item!r}: unknown section {section!r}; known: data, model, train")
        known = [f.name for f in dataclasses.fields(sections[section])]
        if key not in known:
            raise AffectlabError(f"{where} {item!r}: unknown option {key!r} in [{section}]; known: {', '.join(known)}")
        if typing.get_type_hints(sections[section])[key] is str:
            overrides[f"{section}.{key}"] = text.strip()  # precision=32 means the string '32'
            continue
        try:
            overrides[f"{section}.{key}"] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise AffectlabError(f"{where} {item!r}: value is not valid YAML") from None
    return overrides


def with_overrides(cfg: RunConfig, overrides: dict[str, Any], where: str = "--set") -> RunConfig:
    """``cfg`` with ``{"section.key": value}`` replaced, validated like a recipe."""
    if not overrides:
        return cfg  # already validated where it was built; the CLI and benchmarks call this with no --set too
    sections = {"data": cfg.data, "model": cfg.model, "train": cfg.train}
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        sections[section] = dataclasses.replace(sections[section], **{key: value})
    result = RunConfig(**sections)
    validate(result, where)
    return result
