"""One experiment = train on the train split, select on val, score the test split once, write the run folder;
and the evaluation of a saved run on its own split or on other data.

Ablations score the validation split instead (``eval_split="val"``), so that comparing recipe levers never
touches the test split. A study also measures each model's size and speed (``efficiency=True``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from affectlab.atomic import is_run_folder, write_json, write_run_marker, write_text
from affectlab.config import RunConfig, config_from_dict, load_recipe
from affectlab.data.dataset import Dataset, FaceSplit, open_dataset
from affectlab.data.multi_source import SourcesData, source_part
from affectlab.data.prepared import majority_faces
from affectlab.data.split import load_split, save_split
from affectlab.errors import AffectlabError
from affectlab.evaluation.cached_trunk import CachedTrunkBackend, feature_scorer
from affectlab.evaluation.calibration import fit_calibration
from affectlab.evaluation.cost import SectionClock
from affectlab.evaluation.efficiency import SpeedPlan, measure_model, training_machine
from affectlab.evaluation.evaluate import Metrics, score, score_sources
from affectlab.evaluation.faces_in_scenes import faces_in_scenes_section
from affectlab.evaluation.robustness import robustness_section, subset_digest
from affectlab.export.model_card import model_card_markdown
from affectlab.labels import EMOTIONS
from affectlab.models.checkpoint import load_checkpoint, save_calibration, save_face_crop
from affectlab.models.meta import Calibration
from affectlab.models.outputs import Outputs, RawOutputs, raw_features, raw_images, to_outputs
from affectlab.models.registry import named_model
from affectlab.reports.plots import plot_training_curves
from affectlab.reports.run_figures import FIGURE_NAMES, write_evaluation_figures
from affectlab.runtime.backends import ModelInfo
from affectlab.runtime.crop_fit import CropFit, fit_crop
from affectlab.training.datamodule import split_features
from affectlab.training.distributed import is_main_process
from affectlab.training.features import FeatureCache
from affectlab.training.fit import TrainResult, last_checkpoint, train_model
from affectlab.training.loggers import Tracking, finish_loggers

__all__ = [
    "Run",
    "check_resumable",
    "evaluate_run",
    "finish_tracking",
    "run_experiment",
    "score_split",
    "write_predictions",
]

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One trained and scored model: what ``affectlab.train`` returns and a study collects.

    ``to_dict()`` is the record written to ``run.json`` and to a study's ``summary.json``.
    """

    name: str
    path: Path
    config: RunConfig
    metrics: Metrics
    weights_description: str
    train_seconds: float
    feature_seconds: float
    used_feature_cache: bool
    epochs_run: int
    best_epoch: int
    efficiency: dict[str, Any] | None = None
    wall_seconds: float | None = None
    data: dict[str, Any] = field(default_factory=dict)  # what was read and skipped (``train`` records it)
    machine: dict[str, Any] = field(default_factory=dict)  # threads, CPU and instruction set that trained it
    # train.logger's loggers, open until ``finish_tracking`` logs the finished run (none for csv)
    loggers: list[Any] = field(default_factory=list, repr=False)

    @property
    def backbone(self) -> str:
        return self.config.model.backbone

    @property
    def task(self) -> str:
        return self.config.model.task

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "name": self.name,
            "backbone": self.backbone,
            "task": self.task,
            "weights": self.config.model.weights,
            "weights_description": self.weights_description,
            "seed": self.config.train.seed,
            "metrics": self.metrics.to_dict(),
            "train_seconds": round(self.train_seconds, 2),
            "feature_seconds": round(self.feature_seconds, 2),
            "used_feature_cache": self.used_feature_cache,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
        }
        sources = [source.label for source in self.config.data.sources]
        if sources:  # several sources: which the model trained on (the others were only scored)
            record["trained_on"] = self.config.data.train_on or sources
        if self.efficiency is not None:
            record["efficiency"] = self.efficiency
        if self.wall_seconds is not None:
            record["wall_seconds"] = self.wall_seconds
        if self.data:
            record["data"] = self.data
        if self.machine:
            record["machine"] = self.machine
        return record


def run_experiment(
    cfg: RunConfig,
    data: Dataset,
    run_dir: str | Path,
    cache: FeatureCache | None = None,
    progress: bool = True,
    eval_split: str = "test",
    resume: bool = False,
    name: str | None = None,
    efficiency: bool = False,
    tracking: Tracking | None = None,
) -> Run | None:
    """Train, score ``eval_split`` (test by default), and return the run.

    ``resume`` continues a killed training in ``run_dir``; ``name`` is the run's name in the record (default: the
    folder's name, which differs when ``--overwrite`` builds the run in a temporary folder). With ``efficiency``,
    the record also gets the model's size, FLOPs and speed (and ``model.onnx`` is written), timed on the scored
    split's faces. ``tracking`` names the run for ``train.logger``; the caller logs the finished run with
    ``finish_tracking`` once its ``run.json`` is written.

    Under DDP only rank zero scores and writes; the other ranks return None once training is done.
    """
    if eval_split not in ("test", "val"):
        raise ValueError(f"eval_split must be test or val, not {eval_split!r}")
    run_dir = Path(run_dir)
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        if not is_run_folder(run_dir):
            write_run_marker(run_dir, "experiment")
        save_split(data.assignment, run_dir / "split.json")
    machine = training_machine()  # as training finds it: the threads a CPU run's figures depend on
    clock = SectionClock()
    with clock("train"):
        result = train_model(cfg, data, run_dir, cache, progress, resume=resume, tracking=tracking)
    if not is_main_process():
        return None
    try:
        run = _score_run(cfg, data, run_dir, cache, eval_split, name, efficiency, result, clock)
    except BaseException:
        for logger in result.loggers:
            logger.finalize("failed")
        raise
    run.loggers, run.machine = result.loggers, machine
    return run


def _score_run(
    cfg: RunConfig,
    data: Dataset,
    run_dir: Path,
    cache: FeatureCache | None,
    eval_split: str,
    name: str | None,
    efficiency: bool,
    result: TrainResult,
    clock: SectionClock,
) -> Run:
    """The trained model's crop fit, calibration, scores, figures and record (``run_experiment`` after training);
    ``clock`` times each section into the record's ``cost``."""
    scored = data.splits[eval_split]
    crop = None
    if cfg.train.fit_crop:  # before anything loads model.pt to predict through the detector
        with clock("crop"):
            crop = _fit_crop(data.splits["train"], cfg.train.seed)
        if crop.fitted:
            assert crop.margin is not None and crop.shift is not None
            save_face_crop(run_dir / "model.pt", crop.margin, crop.shift)
            log.info("crop fitted on %d training faces: margin %.3f, shift %s", crop.found, crop.margin, crop.shift)
        else:
            log.warning("crop not fitted: %s", crop.note)
    features = result.used_feature_cache  # a frozen trunk whose pooled features are cached: heads only from here
    feature_cache = cache or FeatureCache()

    def raw(split: FaceSplit) -> RawOutputs:
        if features and not cfg.train.tta_flip:
            pooled = split_features(cfg, split, result.model, result.preprocess, feature_cache, result.backbone)
            return raw_features(result.model, pooled)
        return raw_images(result.model, split.images, result.preprocess, tta_flip=cfg.train.tta_flip)

    calibration = None
    if cfg.train.calibrate:  # after model selection, on the validation split only
        with clock("calibration"):
            val = data.splits["val"]
            calibration = fit_calibration(raw(val), val.expression, val.va, cfg.train.coverage)
            save_calibration(run_dir / "model.pt", calibration)
    tta = cfg.train.tta_flip
    with clock("clean"):
        raw_scored = raw(scored)
        outputs, uncalibrated = to_outputs(raw_scored, calibration), to_outputs(raw_scored)
        metrics, shown, shown_outputs = score_split(
            cfg, data, scored, outputs, eval_split, tta, calibration, uncalibrated
        )
    if cfg.train.robustness:  # on the faces the top level reports (with several sources, the selecting one's)
        with clock("robustness"):
            flip = cfg.train.robustness_flip and tta
            scorer = feature_scorer(cfg, shown, result, feature_cache) if features and not flip else None
            metrics["robustness"] = robustness_section(
                result.model, result.preprocess, shown, metrics, tta, calibration=calibration,
                faces=cfg.train.robustness_faces, flip=cfg.train.robustness_flip,
                every_severity=cfg.train.robustness_severities == "every", scorer=scorer,
            )  # fmt: skip
    if cfg.train.faces_in_scenes:  # through the runtime predictor, as the saved model.pt predicts
        with clock("scenes"):
            _, saved = load_checkpoint(run_dir)
            cached = CachedTrunkBackend(cfg, result, feature_cache, saved) if features and not tta else None
            metrics["faces_in_scenes"] = faces_in_scenes_section(
                result.model, saved, shown, metrics, tta, backend=cached
            )
    if crop is not None:
        metrics["crop"] = crop.to_dict()
    with clock("figures"):
        write_predictions(run_dir / "predictions.csv", scored, outputs)
        plot_training_curves(result.history, run_dir / FIGURE_NAMES["curves"], cfg.train.monitor, result.best_epoch)
        title = f"{cfg.model.backbone} {cfg.model.task}"
        before = uncalibrated if shown is scored else None  # several sources: the figures show one source's faces
        write_evaluation_figures(run_dir, metrics, shown_outputs, shown, title=title, uncalibrated=before)
    run = Run(
        name=name or run_dir.name,
        path=run_dir,
        config=cfg,
        metrics=Metrics.from_dict(metrics),
        weights_description=result.backbone.description,
        train_seconds=result.train_seconds,
        feature_seconds=result.feature_seconds,
        used_feature_cache=result.used_feature_cache,
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
    )
    if efficiency:
        with clock("efficiency"):
            _, meta = load_checkpoint(run_dir)  # what was saved: flip TTA, calibration and its data included
            # On the CPU, where ONNX Runtime runs too, whatever device trained the model.
            # Only the faces timed, decoded now: a streamed split decodes on access, which is no part of the
            # model's speed.
            faces = scored.images[: SpeedPlan().batch]
            run.efficiency = measure_model(result.model.cpu(), meta, run_dir, faces)
    metrics["cost"] = clock.to_dict()  # last, so that it holds every section (Run.metrics shares this document)
    write_json(run_dir / "metrics.json", metrics)
    return run


def finish_tracking(run: Run, folder: Path) -> None:
    """Log a finished run to its ``train.logger`` (nothing for csv): its test metrics, figures and model card,
    read from ``folder`` (where the run is being written, its ``run.json`` included), then close the loggers."""
    if not run.loggers:
        return
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    _, meta = load_checkpoint(folder)
    card = model_card_markdown(ModelInfo.of(meta, str(folder / "model.pt"), "pytorch"))
    finish_loggers(run.loggers, folder, metrics, run.config.to_dict(), card)
    run.loggers = []


#: The last crop fit, by (training faces, seed): a study's models share their training faces, and the fit is the
#: detector's, not the model's, so it is made once per split.
_CROP_FITS: dict[tuple[str, int], CropFit] = {}


def _fit_crop(train: FaceSplit, seed: int) -> CropFit:
    hashes = list(train.hashes)
    if len(hashes) != len(train):  # faces without content hashes: nothing to know them again by
        return fit_crop(train.images, seed=seed)
    key = (subset_digest(hashes), seed)
    if key not in _CROP_FITS:
        _CROP_FITS.clear()
        _CROP_FITS[key] = fit_crop(train.images, seed=seed)
    return _CROP_FITS[key]


def score_split(
    cfg: RunConfig,
    data: Dataset,
    scored: FaceSplit,
    outputs: Outputs,
    split: str,
    tta_flip: bool,
    calibration: Calibration | None = None,
    uncalibrated: Outputs | None = None,
) -> tuple[dict[str, Any], FaceSplit, Outputs]:
    """The metrics document, and the samples and outputs its figures show: one dataset's, or with several sources
    every source scored on its own and the figures of the source the top level reports."""
    if not isinstance(data, SourcesData):
        metrics = score(outputs, scored, cfg.model, split, tta_flip, calibration, uncalibrated)
        return (metrics, *_majority(scored, outputs))
    select = cfg.train.select_source
    metrics = score_sources(
        outputs, scored, data.infos, cfg.model, split, tta_flip, cfg.data.train_on, select, calibration, uncalibrated
    )
    index = [info.name for info in data.infos].index(metrics["source"])
    rows = scored.source == index
    return metrics, *_majority(source_part(data.splits[split], index), {k: v[rows] for k, v in outputs.items()})


def _majority(split: FaceSplit, outputs: Outputs) -> tuple[FaceSplit, Outputs]:
    """The faces the figures show and the damage scores use: crowd-voted ties left out, as the accuracy does."""
    part, rows = majority_faces(split)
    return (split, outputs) if rows is None else (part, {key: value[rows] for key, value in outputs.items()})


def write_predictions(path: Path, split: FaceSplit, outputs: Outputs) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = ["id"]
    if "probs" in outputs:
        header += ["true_expression", "pred_expression", *[f"p_{name}" for name in EMOTIONS]]
    if "va" in outputs:
        header += ["true_valence", "true_arousal", "pred_valence", "pred_arousal"]
    writer.writerow(header)
    for i, sample_id in enumerate(split.ids):
        row: list[Any] = [sample_id]
        if "probs" in outputs:
            true = EMOTIONS[split.expression[i]] if split.expression[i] >= 0 else ""
            row += [true, EMOTIONS[int(outputs["probs"][i].argmax())], *(f"{p:.5f}" for p in outputs["probs"][i])]
        if "va" in outputs:
            row += [f"{v:.5f}" for v in (*split.va[i], *outputs["va"][i])]
        writer.writerow(row)
    return write_text(path, buffer.getvalue())


def check_resumable(out: Path, cfg: RunConfig, overwrite: bool) -> None:
    """``resume`` continues the run only with the settings it started with."""
    if overwrite:
        raise AffectlabError("--resume continues a run and --overwrite replaces it; give one of them")
    if not last_checkpoint(out).is_file():
        raise AffectlabError(
            f"{out}: nothing to resume (no checkpoints/last.ckpt: the training finished, or never ended an epoch)"
        )
    if (out / "model.pt").exists():
        raise AffectlabError(f"{out}: the training already finished (model.pt exists)")
    saved, now = load_recipe(out / "config.yaml").to_dict(), cfg.to_dict()
    if saved != now:
        changed = [
            f"{section}.{key}"
            for section, values in now.items()
            for key, value in values.items()
            if saved.get(section, {}).get(key) != value
        ]
        raise AffectlabError(f"{out}: --resume needs the settings the run started with; changed: {', '.join(changed)}")


def evaluate_run(
    run_dir: str | Path,
    data: str | None = None,
    split: str = "test",
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    batch_size: int = 64,
    tta_flip: bool | None = None,
    robustness: bool | None = None,
    faces_in_scenes: bool | None = None,
) -> Metrics:
    """Score a saved run on its own split or (``split="all"``) on other data, and write metrics and figures.

    ``tta_flip`` overrides the run's own flip test-time augmentation, to measure what it buys; ``robustness``
    the run's ``train.robustness`` (scores under camera damage), ``faces_in_scenes`` its
    ``train.faces_in_scenes`` (the faces pasted into scenes, through the detector). A named model
    (``affectlab-base``) has no run folder here: it is scored on other data only (``split="all"``), into
    ``eval-NAME-DATA`` in the current folder unless ``out_dir`` is given; its card (MODEL_CARD.md) holds the test
    metrics of the run it came from.
    """
    if split not in ("test", "val", "all"):
        raise AffectlabError(f"unknown split {split!r}; use test, val or all")
    named = named_model(run_dir) if isinstance(run_dir, str) else None
    if named is not None:
        if split != "all" or not data:
            raise AffectlabError(
                f"{named.name}: a named model's own split is not here; score it on a dataset with "
                "--data DIR --split all (its MODEL_CARD.md gives its test metrics)"
            )
        model, meta = load_checkpoint(named.name)
        if not meta.config:
            raise AffectlabError(f"{named.name}: its file records no training config to score with")
        cfg = config_from_dict(meta.config, named.name)
        out_dir = out_dir or Path(f"eval-{named.name}-{_slug(data)}")
        run_dir = Path(named.name)
    else:
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise AffectlabError(f"{run_dir}: not a run folder (no config.yaml)")
        cfg = load_recipe(run_dir / "config.yaml")
        model, meta = load_checkpoint(run_dir)
    preprocess = meta.preprocess
    data_cfg = dataclasses.replace(cfg.data, path=data) if data else cfg.data
    if split == "all":
        which = "all"
    else:
        if data:
            raise AffectlabError(
                "--data with --split test|val would need the run's split of that data; use --split all"
            )
        split_file = run_dir / "split.json"
        load_split(split_file)
        data_cfg = dataclasses.replace(data_cfg, split_file=str(split_file))
        which = split
    if data and data_cfg.sources:  # other data: that one dataset, not the run's sources
        data_cfg = dataclasses.replace(data_cfg, sources=[], train_on=None)
    prepared = open_dataset(data_cfg, preprocess.input_size, splits=(which,))
    part = prepared.splits[which]
    tta = cfg.train.tta_flip if tta_flip is None else tta_flip
    clock = SectionClock()
    with clock("clean"):
        raw = raw_images(model, part.images, preprocess, batch_size, tta_flip=tta)
        outputs, uncalibrated = to_outputs(raw, meta.calibration), to_outputs(raw)
        scored_part = part
        metrics, part, outputs = score_split(cfg, prepared, part, outputs, split, tta, meta.calibration, uncalibrated)
    before = uncalibrated if part is scored_part else None  # several sources: the figures show one source's faces
    if cfg.train.robustness if robustness is None else robustness:
        with clock("robustness"):
            metrics["robustness"] = robustness_section(
                model, preprocess, part, metrics, tta, batch_size, calibration=meta.calibration,
                faces=cfg.train.robustness_faces, flip=cfg.train.robustness_flip,
                every_severity=cfg.train.robustness_severities == "every",
            )  # fmt: skip
    if cfg.train.faces_in_scenes if faces_in_scenes is None else faces_in_scenes:
        with clock("scenes"):
            metrics["faces_in_scenes"] = faces_in_scenes_section(model, meta, part, metrics, tta)
    metrics["data"] = prepared.source
    default_target = run_dir if not data and split == "test" else run_dir / f"eval-{split}-{_slug(data_cfg.path)}"
    target = Path(out_dir) if out_dir else default_target
    if (target / "metrics.json").exists() and not overwrite:
        raise AffectlabError(f"{target / 'metrics.json'}: exists; pass --overwrite to replace it")
    title = f"{cfg.model.backbone} {cfg.model.task} ({split})"
    with clock("figures"):
        write_evaluation_figures(target, metrics, outputs, part, title=title, uncalibrated=before)
    metrics["cost"] = clock.to_dict()
    write_json(target / "metrics.json", metrics)
    return Metrics.from_dict(metrics, path=target / "metrics.json")


def _slug(path: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(path).name or "data")
