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
from affectlab.labels import EMOTIONS

__all__ = [
    "DEMO_DATA",
    "TASKS",
    "AugmentConfig",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "SourceConfig",
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
Layout = Literal["auto", "affectnet", "csv", "folders", "ferplus"]
#: What a crowd-voted source (FER+) trains on: the vote distribution (soft target) or the majority label.
Targets = Literal["votes", "majority"]
#: What a dataset can label: the emotion class, and valence/arousal.
LabelKind = Literal["expression", "va"]
#: ``--data demo``: the built-in synthetic faces, trained with the packaged ``demo`` recipe unless one is given.
DEMO_DATA = "demo"


@dataclass
class SourceConfig:
    """One dataset of a multi-dataset run (``data.sources``): where it is, how to read it, how much to draw from it.

    ``class_map`` maps the dataset's class names or ids to affectlab's emotion names (class folders: folder names;
    AffectNet layouts: expression codes). ``weight`` is the source's share of each epoch's draws relative to the
    others (equal by default, whatever the sizes); ``per_epoch`` instead fixes how many of its faces an epoch draws
    (a source without it then draws its training split's size), so a large source (FER+) adds a set number of
    faces per epoch. ``tasks`` says which labels the source gives (None: all its layout has); a label it does not
    give is treated as missing, never as a value. ``targets`` says what a crowd-voted source (FER+) trains on: the
    vote distribution (``votes``) or the majority label (``majority``; ties left out); other layouts ignore it.
    ``class_weights`` overrides ``train.class_weights`` for this source's faces (None: the run's): balanced weights
    suit a source whose test split is balanced (AffectNet's), but on FER+, whose 8 classes range from 9,271 Neutral
    to 156 Contempt faces, they weigh a Contempt vote 40 times a Neutral one and cost majority accuracy.
    """

    path: str
    name: str | None = None  # default: the folder's (or CSV file's) name
    layout: Layout = "auto"
    image_root: str | None = None
    class_map: dict[str, str] = field(default_factory=dict)
    weight: float = 1.0
    tasks: list[LabelKind] | None = None
    targets: Targets = "votes"
    per_epoch: int | None = None
    class_weights: Literal["balanced", "none"] | None = None

    @property
    def label(self) -> str:
        """The source's name in metrics, reports and ``split.json``."""
        return self.name or Path(self.path.rstrip("/")).stem or self.path


def _source_from(value: Any, where: str) -> SourceConfig:
    if isinstance(value, SourceConfig):
        return value
    if isinstance(value, str):
        return SourceConfig(path=value)
    if not isinstance(value, dict) or "path" not in value:
        raise AffectlabError(f"{where}: expected a path or a mapping with a path, found {value!r}")
    known = tuple(f.name for f in dataclasses.fields(SourceConfig))
    unknown = sorted(str(key) for key in set(value) - set(known))
    if unknown:
        raise AffectlabError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return SourceConfig(**value)


@dataclass
class DataConfig:
    """Where the data is and how it is split.

    One dataset is named by ``path`` (``layout``, ``image_root``, ``class_map``). Several are listed in
    ``sources``; then ``path`` names the first one (set for you) and each split is drawn per source, with the
    shared ``split_seed`` and fractions.
    """

    path: str = DEMO_DATA
    layout: Layout = "auto"
    image_root: str | None = None  # for the CSV layout; defaults to the CSV's folder
    class_map: dict[str, str] = field(default_factory=dict)  # folder name -> emotion name, for class folders
    on_bad_sample: Literal["skip", "error"] = "skip"
    # A crowd-voted dataset (FER+): train on the vote distribution (votes) or on the majority label (majority)
    targets: Targets = "votes"
    split_seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_file: str | None = None
    max_bad_fraction: float = 0.5  # stop before training when a larger share of the samples cannot be read
    sources: list[SourceConfig] = field(default_factory=list)  # several datasets in one run (empty: just path)
    # Several sources: the ones the model trains on (names; None: all). The others are only scored (test split),
    # for a cross-dataset comparison.
    train_on: list[str] | None = None

    def __post_init__(self) -> None:
        # Recipes, --set and config.yaml give sources as mappings (or bare paths); the run works with SourceConfig.
        if isinstance(self.sources, list):
            self.sources = [_source_from(v, f"data.sources[{i}]") for i, v in enumerate(self.sources)]
            if self.sources and self.path == DEMO_DATA:
                self.path = self.sources[0].path

    def source_configs(self) -> list[SourceConfig]:
        """Every source of the run: ``sources``, or the one dataset ``path`` names."""
        if self.sources:
            return list(self.sources)
        return [
            SourceConfig(
                self.path,
                layout=self.layout,
                image_root=self.image_root,
                class_map=self.class_map,
                targets=self.targets,
            )
        ]


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
    # A second trunk on the same face whose pooled features join the backbone's before the heads (facemesh: the
    # face-trained FaceMesh network, from its packaged weights unless weights is none); docs/landmarks.md.
    branch: str | None = None
    branch_freeze: bool = True  # false: fine-tuned at train.backbone_lr
    # BatchNorm1d on the pooled features before the heads: for trunks whose features sit far from zero with a
    # small spread (face_resnet29: mean about 1.2, spread about 0.2), which the heads' first layer learns badly.
    head_norm: bool = False


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
    # Several sources: the source whose validation metric selects the model (None: the first; "combined": the mean
    # over sources), and so early stopping.
    select_source: str | None = None
    class_weights: Literal["balanced", "none"] = "balanced"
    sampler: Literal["none", "balanced"] = "none"  # balanced: class-balanced sampling instead of class weights
    label_smoothing: float = 0.0
    va_loss: Literal["mse", "ccc", "mse+ccc"] = "mse"
    expression_loss_weight: float = 1.0
    va_loss_weight: float = 1.0
    unfreeze_at_epoch: int | None = None  # gradual unfreezing: backbone frozen until this epoch
    augment: bool = False  # flip, small affine, colour jitter, random erasing; camera damage in [augment]
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
    # Score the test split again under camera damage (9 damages x 3 severities) after training; docs/robustness.md
    robustness: bool = True
    # The faces damaged: a fixed subset stratified by expression (0: every scored face), the share kept given with
    # its 95% bootstrap interval over them; and whether damaged faces get the flip TTA too (tta_flip and this).
    # Before issue 34: every face at every severity, with the model's flip (robustness_faces 0, robustness_flip
    # true, robustness_severities every).
    robustness_faces: int = 150
    robustness_flip: bool = False
    # Each face at one severity of each damage, dealt so that each severity gets a third of the faces (one: 9
    # passes of the subset), or at all three (every: 27 passes, the protocol before this option).
    robustness_severities: Literal["one", "every"] = "one"
    # Paste the test faces into generated scenes and score them end to end through the default detector and the
    # model's crop, as `affectlab predict` runs (the "Faces in scenes" section); docs/robustness.md
    faces_in_scenes: bool = True
    # After training, run the default detector over the training images and fit the model's crop (margin and
    # centre offset) to where it puts the face in them, so detected faces are cut as the training faces were
    fit_crop: bool = True
    # Experiment tracking through Lightning's loggers (docs/training.md): csv writes history.csv only (always
    # written); tensorboard and mlflow also log the recipe, the curves, the test metrics, the figures and the card
    logger: Literal["csv", "tensorboard", "mlflow"] = "csv"
    # mlflow: a tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current folder);
    # tensorboard: a folder for <experiment>/<run> logs (default: the run folder's tensorboard/)
    logger_uri: str | None = None


@dataclass
class AugmentConfig:
    """What ``train.augment: true`` does to a training face: the one description from which both the loader's
    torchvision pipeline and the device's kornia pipeline are built (``affectlab.data.augment``).

    The first group is the augmentation every recipe has used (flip, small affine, colour jitter, erasing). The
    camera damage after it (downscale, greyscale, JPEG, blur, noise, exposure, occluders) is off by default: each
    is a probability, 0 leaves the op out of the pipeline, so a recipe without it trains exactly as before.
    Damage is applied first (what the camera did to the photo), then the usual augmentation.
    """

    flip: float = 0.5  # probability of a horizontal mirror
    degrees: float = 10.0  # rotation, uniform in [-degrees, degrees]
    translate: float = 0.08  # shift, uniform in [-translate, translate] of the side
    scale: list[float] = field(default_factory=lambda: [0.9, 1.1])  # zoom, uniform in [low, high]
    brightness: float = 0.3  # colour jitter factors, uniform in [1 - x, 1 + x] (hue: [-x, x] of a turn)
    contrast: float = 0.3
    saturation: float = 0.2
    hue: float = 0.02
    erase: float = 0.25  # probability of a black rectangle
    erase_area: list[float] = field(default_factory=lambda: [0.02, 0.15])  # its share of the image
    # Camera damage: each value is the probability that a face gets it (0: off).
    downscale: float = 0.0  # down to a side uniform in downscale_px (pixels), then back up
    downscale_px: list[int] = field(default_factory=lambda: [24, 96])
    greyscale: float = 0.0
    jpeg: float = 0.0  # JPEG round trip at a quality uniform in jpeg_quality
    jpeg_quality: list[int] = field(default_factory=lambda: [10, 90])
    blur: float = 0.0  # Gaussian blur, sigma (pixels at the input size) uniform in blur_sigma
    blur_sigma: list[float] = field(default_factory=lambda: [0.5, 2.5])
    noise: float = 0.0  # Gaussian sensor noise of this std (a share of the full range)
    noise_std: float = 0.05
    exposure: float = 0.0  # under- or over-exposure: pixel values times a factor uniform in exposure_factor
    exposure_factor: list[float] = field(default_factory=lambda: [0.4, 1.8])
    occlude_eyes: float = 0.0  # a dark sunglasses-like bar over the eyes
    occlude_mouth: float = 0.0  # a skin-coloured hand-like blob over the mouth
    occluder_area: list[float] = field(default_factory=lambda: [0.05, 0.15])  # the occluder's share of the image

    def camera_damage(self) -> bool:
        """Whether any camera damage is switched on."""
        return any(getattr(self, name) > 0 for name in CAMERA_DAMAGE)


#: The camera-damage switches of ``AugmentConfig``, in the order the pipelines apply them.
CAMERA_DAMAGE = (
    "occlude_eyes",
    "occlude_mouth",
    "exposure",
    "blur",
    "noise",
    "downscale",
    "greyscale",
    "jpeg",
)


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
    # Several sources: which of them each model trains on (names), e.g. [[a], [b], [a, b]] for a cross-dataset
    # table; None: one model on all of them. Every model is scored on every source's test split.
    source_sets: list[list[str]] | None = None


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "augment": AugmentConfig,
    "study": StudyConfig,
}
#: Each section's option names, in declaration order (for unknown-option messages and flat option names).
OPTIONS: dict[str, tuple[str, ...]] = {s: tuple(f.name for f in dataclasses.fields(cls)) for s, cls in SECTIONS.items()}


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
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
            augment=self.augment,
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
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    if origin is dict:  # folder names in a class map may read as numbers in YAML; they are made strings where used
        return isinstance(value, dict)
    return isinstance(value, origin or hint)


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "is not one of " + ", ".join(map(str, typing.get_args(hint)))
    if typing.get_origin(hint) is list and typing.get_origin(item := typing.get_args(hint)[0]) is Literal:
        return "has an item that is not one of " + ", ".join(map(str, typing.get_args(item)))
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
    if cfg.train.robustness_faces < 0:
        raise AffectlabError(
            f"{where}: train.robustness_faces={cfg.train.robustness_faces} must be 0 (every face) or a face count"
        )
    fractions = cfg.data.val_fraction + cfg.data.test_fraction
    if not 0 < fractions < 1:
        raise AffectlabError(f"{where}: val_fraction + test_fraction must be between 0 and 1")
    if not cfg.study.backbones or not cfg.study.tasks or cfg.study.seeds == []:
        raise AffectlabError(f"{where}: study.backbones, study.tasks and study.seeds must not be empty")
    _validate_augment(cfg, where)
    _validate_sources(cfg, where)


#: The augment options that are a [low, high] range, and the values each end may take.
_AUGMENT_RANGES: dict[str, tuple[float, float]] = {
    "scale": (0.1, 10.0),
    "erase_area": (0.0, 1.0),
    "downscale_px": (8, 4096),
    "jpeg_quality": (1, 100),
    "blur_sigma": (0.01, 50.0),
    "exposure_factor": (0.0, 10.0),
    "occluder_area": (0.001, 0.5),
}


def _validate_augment(cfg: RunConfig, where: str) -> None:
    a = cfg.augment
    for name in ("flip", "erase", *CAMERA_DAMAGE):
        if not 0 <= getattr(a, name) <= 1:
            raise AffectlabError(f"{where}: augment.{name}={getattr(a, name)} is a probability: between 0 and 1")
    for name, (low, high) in _AUGMENT_RANGES.items():
        value = getattr(a, name)
        if len(value) != 2 or not low <= value[0] <= value[1] <= high:
            raise AffectlabError(
                f"{where}: augment.{name}={value} must be [low, high] with {low} <= low <= high <= {high}"
            )
    for name in ("degrees", "translate", "brightness", "contrast", "saturation", "noise_std"):
        if getattr(a, name) < 0:
            raise AffectlabError(f"{where}: augment.{name}={getattr(a, name)} must not be negative")
    if not (a.translate <= 1 and a.brightness <= 1 and a.contrast <= 1 and a.saturation <= 1 and 0 <= a.hue <= 0.5):
        raise AffectlabError(
            f"{where}: augment.translate, brightness, contrast and saturation must be at most 1, hue 0.5"
        )
    if a.camera_damage() and not cfg.train.augment:
        switched = ", ".join(f"augment.{n}" for n in CAMERA_DAMAGE if getattr(a, n) > 0)
        raise AffectlabError(f"{where}: {switched} needs train.augment: true (augmentation is off)")


def _validate_sources(cfg: RunConfig, where: str) -> None:
    """Several sources: unique names, positive weights, at least one label each, a known selecting source."""
    data = cfg.data
    sources = data.source_configs()
    if data.sources:
        single: dict[str, Any] = {"layout": "auto", "image_root": None, "class_map": {}, "targets": "votes"}
        given = [f"data.{key}" for key, default in single.items() if getattr(data, key) != default]
        if data.path != data.sources[0].path:
            given.insert(0, "data.path")
        if given:
            raise AffectlabError(
                f"{where}: {', '.join(given)} and data.sources both given; with several sources, set each "
                "source's path, layout, image_root, class_map and targets in data.sources"
            )
    names = [s.label for s in sources]
    for i, source in enumerate(sources):
        at = f"{where}: data.sources[{i}] ({source.label})"
        if "/" in source.label or not source.label:
            raise AffectlabError(f"{at}: name must be non-empty and without '/' (it prefixes the source's ids)")
        if names.count(source.label) > 1:
            raise AffectlabError(f"{at}: two sources are named {source.label!r}; give each a distinct name")
        if not source.weight > 0:
            raise AffectlabError(f"{at}: weight={source.weight} must be above 0")
        if source.per_epoch is not None and (isinstance(source.per_epoch, bool) or not source.per_epoch > 0):
            raise AffectlabError(f"{at}: per_epoch={source.per_epoch} must be a number of faces above 0")
        hints = typing.get_type_hints(SourceConfig)
        for f in dataclasses.fields(SourceConfig):
            if not _type_ok(getattr(source, f.name), hints[f.name]):
                raise AffectlabError(f"{at}: {f.name}={getattr(source, f.name)!r} {_describe(hints[f.name])}")
        if source.tasks is not None and not source.tasks:
            raise AffectlabError(f"{at}: labels no task (tasks is empty); list expression, va or both")
        unknown = sorted({str(v) for v in source.class_map.values()} - set(EMOTIONS))
        if unknown:
            raise AffectlabError(
                f"{at}: class_map names unknown class(es) {', '.join(unknown)}; affectlab's classes are "
                f"{', '.join(EMOTIONS)}"
            )
    if any(s.per_epoch is not None for s in sources) and any(s.weight != 1.0 for s in sources):
        raise AffectlabError(
            f"{where}: data.sources set both per_epoch and weight; per_epoch fixes each source's draws per epoch "
            "(its training split's size where unset), so give one or the other"
        )
    trained = data.train_on if data.train_on is not None else names
    unknown = [name for name in trained if name not in names]
    if unknown or not trained:
        raise AffectlabError(
            f"{where}: data.train_on={data.train_on} names no source or unknown source(s) {', '.join(unknown)}; "
            f"sources: {', '.join(names)}"
        )
    select = cfg.train.select_source
    if select is not None and select != "combined" and select not in trained:
        raise AffectlabError(
            f"{where}: train.select_source={select!r} is not a source the model trains on; use one of "
            f"{', '.join(trained)} or combined"
        )
    for members in cfg.study.source_sets or []:
        unknown = [m for m in members if m not in names]
        if unknown or not members:
            raise AffectlabError(
                f"{where}: study.source_sets entry {members} names no source or unknown source(s) "
                f"{', '.join(unknown)}; sources: {', '.join(names)}"
            )


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
    try:
        return SECTIONS[section](**values)
    except AffectlabError as exc:  # a malformed data.sources entry
        raise AffectlabError(f"{where}: {exc}") from None


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
    given = dotted(overrides)
    for name, value in given.items():
        section, key = name.split(".", 1)
        if key not in OPTIONS.get(section, ()):
            raise AffectlabError(f"{where}: unknown option {name!r}")
        try:
            parts[section] = dataclasses.replace(parts[section], **{key: value})
        except AffectlabError as exc:  # a malformed data.sources entry
            raise AffectlabError(f"{where}: {exc}") from None
    if given.get("data.sources") and "data.path" not in given:
        # New sources replace the recipe's: data.path names their first, as when they came from several --data
        parts["data"] = dataclasses.replace(parts["data"], path=parts["data"].sources[0].path)
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
