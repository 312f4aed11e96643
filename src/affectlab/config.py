"""Typed run configuration, resolved in one place and saved with every run.

Every setting reaches a run along one path: the defaults below < a recipe (a YAML file or a packaged name) <
the command line's flags or the Python API's keywords < ``--set section.key=value``. ``resolve_config`` applies
them in that order and validates once. Each choice field is a ``Literal`` type, so validation, the CLI's
``choices`` and the error messages all read the allowed values from the annotation. The resolved config is
written into the run folder as ``config.yaml``, so a run can always be explained and repeated.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from affectlab.errors import AffectlabError

__all__ = [
    "DEMO_DATA",
    "TASKS",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "StudyConfig",
    "Task",
    "TrainConfig",
    "cache_root",
    "choices",
    "config_from_dict",
    "load_recipe",
    "packaged_recipes",
    "parse_overrides",
    "resolve_config",
    "with_overrides",
]

Task = Literal["classification", "regression", "multitask"]
TASKS: tuple[str, ...] = typing.get_args(Task)
Layout = Literal["auto", "affectnet", "csv", "folders"]
#: ``--data demo``: the built-in synthetic faces, trained with the packaged ``demo`` recipe unless one is given.
DEMO_DATA = "demo"


@dataclass
class DataConfig:
    """Where the data is and how it is split."""

    path: str = DEMO_DATA
    layout: Layout = "auto"
    image_root: str | None = None  # for the CSV layout; defaults to the CSV's folder
    class_map: dict[str, str] = field(default_factory=dict)  # folder name -> emotion name, for class folders
    on_bad_sample: Literal["skip", "error"] = "skip"
    split_seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_file: str | None = None
    max_bad_fraction: float = 0.5  # stop before training when a larger share of the samples cannot be read


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network; stored in every checkpoint."""

    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"  # imagenet | none | a torchvision entry name (IMAGENET1K_V2) | PATH to a state dict
    task: Task = "classification"
    freeze: bool = True
    input_size: int = 128
    hidden: int = 256
    dropout: float = 0.5


@dataclass
class TrainConfig:
    """Optimisation settings. Defaults reproduce the reference study."""

    epochs: int = 12
    batch_size: int = 32
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    backbone_lr: float | None = None  # None: same as lr (only used when the backbone trains)
    weight_decay: float = 0.0
    scheduler: Literal["none", "cosine", "onecycle"] = "none"
    warmup_epochs: float = 0.0
    patience: int = 4  # early stopping on the monitored validation metric; best weights are restored
    # val_score: accuracy + mean V/A CCC, for recipes whose loss stops tracking what is reported
    monitor: Literal["val_loss", "val_accuracy", "val_ccc", "val_score"] = "val_loss"
    class_weights: Literal["balanced", "none"] = "balanced"
    sampler: Literal["none", "balanced"] = "none"  # balanced: class-balanced sampling instead of class weights
    label_smoothing: float = 0.0
    va_loss: Literal["mse", "ccc", "mse+ccc"] = "mse"
    expression_loss_weight: float = 1.0
    va_loss_weight: float = 1.0
    unfreeze_at_epoch: int | None = None  # gradual unfreezing: backbone frozen until this epoch
    augment: bool = False  # flip, small affine, colour jitter, random erasing
    # Where augmentation and normalisation run: per image in the loader's processes (CPU), or per batch on the
    # training device after the transfer (kornia, random parameters per sample), so that several GPUs are not
    # starved by per-image CPU work. Measure both on the machine before choosing "device".
    augment_on: Literal["loader", "device"] = "loader"
    tta_flip: bool = False  # average predictions over the image and its mirror at evaluation
    # After model selection, fit on the validation split a temperature for the class probabilities and conformal
    # prediction sets (classes) and intervals (V/A) with this target coverage; stored in model.pt.
    calibrate: bool = True
    coverage: float = 0.9
    ema_decay: float | None = None
    channels_last: bool = True
    cache_features: bool = True  # frozen backbone and no augmentation: pool features once, train the head
    seed: int = 0
    # auto: bf16-mixed on GPUs that have it, else 16-mixed; 32 on CPU
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"] = "auto"
    num_workers: int = 0  # loader processes; 0 on a 2-core CPU, several on a GPU machine (--set train.num_workers=8)
    # Where and on how many devices to train (Lightning's Trainer arguments). One device by default, so that a
    # machine with several GPUs never starts DDP unasked; --devices 8 --strategy ddp asks for it.
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int = 1  # per node; -1 means all
    num_nodes: int = 1  # several nodes: launch under torchrun or srun, which Lightning detects
    strategy: Literal["auto", "ddp", "ddp_find_unused_parameters_true"] = "auto"
    sync_batchnorm: bool = False  # BatchNorm statistics over all ranks' batches (small per-device batches)


@dataclass
class StudyConfig:
    """The grid a study trains: every backbone x task, per seed, on one shared split per seed.

    Saved with the study (``study.yaml``), so the grid is as reproducible as each run. A recipe that names a
    backbone or task without a grid of its own studies exactly that backbone or task: it is never replaced.
    """

    backbones: list[str] = field(default_factory=lambda: ["vgg16", "mobilenet_v2"])
    tasks: list[Task] = field(default_factory=lambda: ["classification", "regression"])
    seeds: list[int] | None = None  # None: data.split_seed only; each seed draws its own split and training seed
    backbone_weights: dict[str, str] = field(default_factory=dict)  # per backbone, e.g. {vgg16: none}


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "study": StudyConfig}
#: Each section's option names, in declaration order (for unknown-option messages and flat option names).
OPTIONS: dict[str, tuple[str, ...]] = {s: tuple(f.name for f in dataclasses.fields(cls)) for s, cls in SECTIONS.items()}


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    study: StudyConfig = field(default_factory=StudyConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def seeds(self) -> list[int]:
        return list(self.study.seeds or [self.data.split_seed])

    def cell(self, backbone: str, task: str, seed: int | None = None) -> RunConfig:
        """One model of the grid: its backbone, task and weights (``study.backbone_weights`` first), and with
        ``seed`` its seed for both the split and the training.

        The cell's own ``study`` section names just that cell, so a run's ``config.yaml`` describes that run.
        """
        data, train = self.data, self.train
        if seed is not None:
            data, train = dataclasses.replace(data, split_seed=seed), dataclasses.replace(train, seed=seed)
        weights = self.study.backbone_weights.get(backbone, self.model.weights)
        return RunConfig(
            data=data,
            model=dataclasses.replace(self.model, backbone=backbone, task=task, weights=weights),  # type: ignore[arg-type]
            train=train,
            study=StudyConfig(backbones=[backbone], tasks=[task], seeds=None if seed is None else [seed]),  # type: ignore[list-item]
        )

    def single_run(self) -> RunConfig:
        """The one model ``train`` fits: this config's backbone and task, with its ``study.backbone_weights`` entry."""
        return self.cell(self.model.backbone, self.model.task)


def cache_root() -> Path:
    """Where affectlab keeps what it can recompute (demo data, pooled features): ``$AFFECTLAB_CACHE``."""
    return Path(os.environ.get("AFFECTLAB_CACHE") or Path.home() / ".cache" / "affectlab").expanduser()


# ---------------------------------------------------------------------------------------------------------------
# Types and validation
# ---------------------------------------------------------------------------------------------------------------


def _hints(section: str) -> dict[str, Any]:
    return typing.get_type_hints(SECTIONS[section])


def choices(section: str, key: str) -> tuple[str, ...] | None:
    """The allowed values of a ``Literal`` field (for validation, argparse ``choices`` and messages), else None."""
    hint = _hints(section)[key]
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if origin is dict:  # folder names in a class map may read as numbers in YAML; they are made strings where used
        return isinstance(value, dict)
    return isinstance(value, origin or hint)


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "is not one of " + ", ".join(map(str, typing.get_args(hint)))
    return "should be of type " + str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _check_types(cfg: RunConfig, where: str) -> None:
    """A recipe or --set value of the wrong type (input_size: big) is named here, not deep inside training."""
    for section in SECTIONS:
        part = getattr(cfg, section)
        hints = _hints(section)
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if not _type_ok(value, hints[f.name]):
                raise AffectlabError(f"{where}: {section}.{f.name}={value!r} {_describe(hints[f.name])}")


def validate(cfg: RunConfig, where: str = "config") -> None:
    """Reject impossible settings early, before any data is read."""
    _check_types(cfg, where)
    if cfg.model.input_size < 32:
        raise AffectlabError(f"{where}: model.input_size={cfg.model.input_size} is too small (minimum 32)")
    if not 0 <= cfg.data.max_bad_fraction <= 1:
        raise AffectlabError(f"{where}: data.max_bad_fraction={cfg.data.max_bad_fraction} must be between 0 and 1")
    if cfg.train.devices == 0 or cfg.train.devices < -1 or cfg.train.num_nodes < 1:
        raise AffectlabError(f"{where}: train.devices must be -1 (all) or at least 1, and train.num_nodes at least 1")
    if not 0 < cfg.train.coverage < 1:
        raise AffectlabError(f"{where}: train.coverage={cfg.train.coverage} must be between 0 and 1 (e.g. 0.9)")
    fractions = cfg.data.val_fraction + cfg.data.test_fraction
    if not 0 < fractions < 1:
        raise AffectlabError(f"{where}: val_fraction + test_fraction must be between 0 and 1")
    if not cfg.study.backbones or not cfg.study.tasks or cfg.study.seeds == []:
        raise AffectlabError(f"{where}: study.backbones, study.tasks and study.seeds must not be empty")


# ---------------------------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------------------------


def packaged_recipes() -> list[str]:
    """Recipes shipped inside the package, usable by name (``--recipe best``)."""
    return sorted(
        p.name.removesuffix(".yaml") for p in resources.files("affectlab.recipes").iterdir() if p.name.endswith(".yaml")
    )


def _recipe_text(recipe: str | Path) -> tuple[str, str]:
    """(YAML text, where it came from) for a recipe path or a packaged recipe's name."""
    path = Path(recipe)
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    name = str(recipe)
    if name in packaged_recipes():
        return resources.files("affectlab.recipes").joinpath(f"{name}.yaml").read_text(encoding="utf-8"), name
    raise AffectlabError(f"{recipe}: recipe file not found (packaged recipes: {', '.join(packaged_recipes())})")


def _read_recipe(recipe: str | Path) -> tuple[dict[str, Any], str]:
    text, where = _recipe_text(recipe)
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:  # an unsafe tag (!!python/object) is a YAMLError too
        raise AffectlabError(f"{where}: not valid YAML ({str(exc).splitlines()[0][:160]})") from None
    except UnicodeDecodeError:
        raise AffectlabError(f"{where}: not valid YAML (not UTF-8 text)") from None
    if not isinstance(values, dict):
        raise AffectlabError(f"{where}: expected a mapping with sections {', '.join(SECTIONS)}")
    return values, where


def _fill(section: str, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise AffectlabError(f"{where}: expected a mapping of options, found {type(values).__name__}")
    known = OPTIONS[section]
    unknown = sorted(str(key) for key in set(values) - set(known))
    if unknown:
        raise AffectlabError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return SECTIONS[section](**values)


def _with_grid_from_model(values: dict[str, Any]) -> dict[str, Any]:
    """A recipe that names a backbone or task and no grid studies that backbone or task, never the defaults."""
    model, study = values.get("model") or {}, dict(values.get("study") or {})
    if isinstance(model, dict) and isinstance(study, dict):
        if "backbone" in model and "backbones" not in study:
            study["backbones"] = [model["backbone"]]
        if "task" in model and "tasks" not in study:
            study["tasks"] = [model["task"]]
    return {**values, "study": study} if study else values


def config_from_dict(values: dict[str, Any], where: str = "config") -> RunConfig:
    """Build a RunConfig from nested dicts, rejecting unknown keys with the file and key named."""
    if not isinstance(values, dict):
        raise AffectlabError(f"{where}: expected a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(str(key) for key in set(values) - {*SECTIONS, "name", "description"})
    if unknown:
        raise AffectlabError(f"{where}: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    values = _with_grid_from_model(values)
    cfg = RunConfig(**{s: _fill(s, values.get(s) or {}, f"{where} [{s}]") for s in SECTIONS})
    validate(cfg, where)
    return cfg


def load_recipe(recipe: str | Path) -> RunConfig:
    """A recipe file (or a packaged recipe's name) over the defaults, validated."""
    values, where = _read_recipe(recipe)
    return config_from_dict(values, where)


# ---------------------------------------------------------------------------------------------------------------
# Overrides: flags, API keywords and --set, all as {"section.key": value}
# ---------------------------------------------------------------------------------------------------------------


def _section_of(key: str) -> str:
    """The section that owns a flat option name (option names are unique across sections)."""
    owners = [section for section, names in OPTIONS.items() if key in names]
    if len(owners) != 1:
        raise AffectlabError(f"unknown option {key!r}; use SECTION.KEY, e.g. train.lr (see --set)")
    return owners[0]


def dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"lr": 0.1, "model.task": ...}`` -> ``{"train.lr": 0.1, "model.task": ...}``; ``seed`` sets both seeds."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == "seed":  # the one shorthand: --seed draws the split and seeds the training alike
            out["data.split_seed"] = out["train.seed"] = value
        elif "." in key:
            out[key] = value
        else:
            out[f"{_section_of(key)}.{key}"] = value
    return out


def parse_overrides(items: Sequence[str] | None, where: str = "--set") -> dict[str, Any]:
    """``section.key=value`` strings (values read as YAML, so 224, 0.1, true, null and [a, b] mean what they say)."""
    overrides: dict[str, Any] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot:
            raise AffectlabError(f"{where} {item!r}: expected SECTION.KEY=VALUE, e.g. train.num_workers=8")
        if section not in SECTIONS:
            raise AffectlabError(f"{where} {item!r}: unknown section {section!r}; known: {', '.join(SECTIONS)}")
        if key not in OPTIONS[section]:
            known = ", ".join(OPTIONS[section])
            raise AffectlabError(f"{where} {item!r}: unknown option {key!r} in [{section}]; known: {known}")
        hint = _hints(section)[key]
        if hint is str or typing.get_origin(hint) is Literal:
            overrides[f"{section}.{key}"] = text.strip()  # precision=32 means the string '32'
            continue
        try:
            overrides[f"{section}.{key}"] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise AffectlabError(f"{where} {item!r}: value is not valid YAML") from None
    return overrides


def with_overrides(cfg: RunConfig, overrides: Mapping[str, Any], where: str = "--set") -> RunConfig:
    """``cfg`` with ``{"section.key": value}`` (or flat option names) replaced, validated like a recipe."""
    if not overrides:
        return cfg
    parts = {s: getattr(cfg, s) for s in SECTIONS}
    for name, value in dotted(overrides).items():
        section, key = name.split(".", 1)
        if key not in OPTIONS.get(section, ()):
            raise AffectlabError(f"{where}: unknown option {name!r}")
        parts[section] = dataclasses.replace(parts[section], **{key: value})
    result = RunConfig(**parts)
    validate(result, where)
    return result


def resolve_config(
    recipe: str | Path | RunConfig | None = None,
    overrides: Mapping[str, Any] | None = None,
    sets: Sequence[str] | None = None,
    where: str = "command line",
) -> RunConfig:
    """The one resolver: defaults < recipe < ``overrides`` (flags or API keywords) < ``sets`` (``--set``).

    Every override is applied, None included (``ema_decay=None`` turns the EMA off); the CLI passes only the flags
    that were given. Without a recipe, ``--data demo`` takes the packaged ``demo`` recipe (a few minutes on 2
    cores, nothing to download). Overrides of ``model.backbone`` or ``model.task`` also set the study's grid
    unless it is given.
    """
    later = {**dotted(overrides or {}), **parse_overrides(sets)}
    if recipe is None:
        recipe = "demo" if later.get("data.path", DEMO_DATA) == DEMO_DATA else None
    if isinstance(recipe, RunConfig):
        cfg = recipe
    elif recipe is not None:
        cfg = load_recipe(recipe)
    else:
        cfg = RunConfig()
    for model_key, grid_key in (("model.backbone", "study.backbones"), ("model.task", "study.tasks")):
        if model_key in later and grid_key not in later:
            later[grid_key] = [later[model_key]]
    return with_overrides(cfg, later, where)
