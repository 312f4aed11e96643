"""Train one model on prepared data and leave a self-describing run folder.

The run folder gets ``config.yaml`` (the resolved config), ``history.csv`` (per-epoch metrics) and
``model.pt`` (the weights of the epoch that scored best on the monitored validation metric, the averaged ones
when an EMA is on, bundled with everything needed to rebuild the model).

While training, ``checkpoints/last.ckpt`` holds the full state after each finished epoch (weights, optimiser,
schedule, EMA, early stopping, history and the random number generators), so that ``resume=True`` continues a
killed run through Lightning's ``ckpt_path`` and reaches exactly the result of an uninterrupted run on the CPU.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import Logger

from affectlab.atomic import write_text
from affectlab.config import DEMO_DATA, RunConfig
from affectlab.data.dataset import Dataset
from affectlab.data.demo import is_demo_dataset
from affectlab.data.multi_source import SourceInfo, SourcesData, source_infos
from affectlab.data.transforms import Preprocess
from affectlab.data.votes import class_targets
from affectlab.errors import AffectlabError
from affectlab.models.affect_model import AffectModel, create_model, task_outputs
from affectlab.models.checkpoint import save_checkpoint
from affectlab.models.weights import Backbone, resolve_backbone
from affectlab.training.datamodule import FaceDataModule
from affectlab.training.device_inputs import DeviceInputs
from affectlab.training.distributed import is_main_process
from affectlab.training.features import FeatureCache
from affectlab.training.finetuning import UnfreezeTrunk
from affectlab.training.history import EpochLines, HistoryCallback
from affectlab.training.loggers import DEFAULT_EXPERIMENT, Tracking, make_loggers
from affectlab.training.module import AffectLitModule
from affectlab.training.source_mix import (
    balanced_class_weights,
    check_sources_label,
    class_mask_table,
    per_source_class_weights,
)

__all__ = [
    "TrainResult",
    "last_checkpoint",
    "on_demo_data",
    "preprocess_for",
    "quiet_lightning",
    "train_model",
]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: AffectModel
    preprocess: Preprocess
    history: list[dict[str, Any]]
    best_epoch: int
    epochs_run: int
    train_seconds: float
    feature_seconds: float
    used_feature_cache: bool
    backbone: Backbone
    loggers: list[Logger]  # train.logger's, open until the scored run is logged (``finish_loggers``)


def preprocess_for(backbone: Backbone, input_size: int) -> Preprocess:
    """What the model is fed: the input size, and the mean/std its trunk's weights were trained with."""
    return Preprocess(input_size=input_size, mean=backbone.mean, std=backbone.std)


def last_checkpoint(run_dir: str | Path) -> Path:
    """Where a run keeps the full state of its last finished epoch until training ends."""
    return Path(run_dir) / "checkpoints" / "last.ckpt"


class RandomState(L.Callback):
    """Saves the random number generators with each checkpoint and puts them back when a run resumes.

    Shuffling, augmentation and dropout draw from these, so without them a resumed run would see other batches
    than the uninterrupted one. They are restored with the checkpoint, before Lightning creates the first data
    iterator of the resumed run, as the uninterrupted run creates the next epoch's iterator right after the save.
    """

    def __init__(self, loader_generator: torch.Generator) -> None:
        self.loader_generator = loader_generator

    def state_dict(self) -> dict[str, Any]:
        return {"torch": torch.get_rng_state(), "loader": self.loader_generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        self.loader_generator.set_state(state_dict["loader"])


class SaveLast(L.Callback):
    """The resume point: the full training state after each finished epoch, replaced atomically each time."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path)


def train_model(
    cfg: RunConfig,
    data: Dataset,
    run_dir: str | Path,
    cache: FeatureCache | None = None,
    progress: bool = True,
    resume: bool = False,
    callbacks: list[L.Callback] | None = None,
    tracking: Tracking | None = None,
) -> TrainResult:
    """Fit ``cfg`` on ``data`` (train split, early stopping on val), restore the best weights, save ``model.pt``.

    ``resume`` continues from ``checkpoints/last.ckpt`` of a run killed in ``run_dir``. Under DDP every rank calls
    this and every rank gets the best weights back; only rank zero writes files. ``callbacks`` are added to
    affectlab's own (early stopping, checkpoints, history). ``tracking`` names the run for ``train.logger``
    (default: experiment ``affectlab``, the run folder's name).
    """
    run_dir = Path(run_dir)
    t = cfg.train
    if isinstance(data, SourcesData):  # several sources: train on data.train_on (all by default)
        data = data.subset(cfg.data.train_on)
    resume_from = last_checkpoint(run_dir) if resume else None
    if resume_from is not None and not resume_from.is_file():
        raise AffectlabError(
            f"{run_dir}: nothing to resume (no {resume_from.relative_to(run_dir)}; the training "
            "finished, or stopped before its first epoch ended)"
        )
    if is_main_process():
        write_text(run_dir / "config.yaml", cfg.to_yaml())
    L.seed_everything(t.seed, workers=True, verbose=False)
    backbone = resolve_backbone(cfg.model.backbone, cfg.model.weights)
    model = create_model(cfg.model, backbone)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    preprocess = preprocess_for(backbone, cfg.model.input_size)
    started = time.perf_counter()
    datamodule = FaceDataModule.build(cfg, data, model, preprocess, cache, backbone)
    feature_seconds = time.perf_counter() - started
    lit = _lit_module(cfg, model, data, datamodule, preprocess)
    loggers = make_loggers(t, run_dir, tracking or Tracking(DEFAULT_EXPERIMENT, run_dir.name), cfg.to_dict())
    trainer, checkpoint, history = _trainer(cfg, run_dir, datamodule.generator, progress, callbacks or [], loggers)
    _fit_keeping_ctrl_c(trainer, lit, datamodule, resume_from)
    train_seconds = time.perf_counter() - started
    trainer.strategy.barrier("affectlab-best-written")  # rank zero has written the best checkpoint
    best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
    lit.load_state_dict(best["state_dict"])
    trainer.strategy.barrier("affectlab-best-read")  # every rank has read it before it is removed
    model = lit.model.eval()  # stays on the accelerator, so the test split is scored there too
    best_epoch = int(best.get("epoch", 0)) + 1
    if trainer.is_global_zero:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        save_checkpoint(
            run_dir / "model.pt",
            model,
            cfg.model,
            preprocess,
            config=cfg.to_dict(),
            best_epoch=best_epoch,
            history=history.rows,
            demo_data=on_demo_data(cfg, data),
        )
    return TrainResult(
        model,
        preprocess,
        history.rows,
        best_epoch,
        len(history.rows),
        train_seconds,
        feature_seconds,
        datamodule.from_features,
        backbone,
        loggers,
    )


def _lit_module(
    cfg: RunConfig, model: AffectModel, data: Dataset, datamodule: FaceDataModule, preprocess: Preprocess
) -> AffectLitModule:
    """The network with its losses and optimiser; class weights unless a sampler balances the classes instead."""
    t = cfg.train
    has_expression, has_va = task_outputs(cfg.model.task)
    infos = source_infos(data)
    check_sources_label(infos, has_expression, has_va, cfg.model.task)
    _check_selection(cfg, infos)
    weights = class_mask = names = None
    balanced = [(info.class_weights or t.class_weights) == "balanced" for info in infos]
    if has_expression and any(balanced) and t.sampler == "none":
        train = data.splits["train"]
        # Faces that train on crowd votes count towards a class by their vote mass (training.source_mix).
        target = class_targets(train) if train.soft.any() else None
        if len(infos) > 1:  # per source: a small source's classes are not outweighed by a large one's
            weights = per_source_class_weights(train.expression, train.source, len(infos), target, train.soft, balanced)
        else:
            weights = balanced_class_weights(train.expression, target, train.soft)
    if len(infos) > 1:
        class_mask, names = class_mask_table(infos), [info.name for info in infos]
    device_inputs = DeviceInputs(preprocess, cfg.augment if t.augment else None) if datamodule.raw else None
    return AffectLitModule(
        model,
        t,
        weights,
        from_features=datamodule.from_features,
        device_inputs=device_inputs,
        class_mask=class_mask,
        sources=names,
    )


def _trainer(
    cfg: RunConfig,
    run_dir: Path,
    generator: torch.Generator,
    progress: bool,
    extra: list[L.Callback],
    loggers: list[Logger],
) -> tuple[L.Trainer, ModelCheckpoint, HistoryCallback]:
    """Lightning's trainer with affectlab's callbacks (early stopping, best and last checkpoints, history, the
    random state, and as configured unfreezing and EMA) before ``extra``; ``loggers`` (none: history.csv only)
    also get the learning rate per epoch."""
    t = cfg.train
    mode = "min" if t.monitor == "val_loss" else "max"
    # Full checkpoints, not save_weights_only: Lightning skips the callbacks' on_save_checkpoint for weights-only
    # saves, and that hook is where EMAWeightAveraging puts the averaged weights (the ones validated and selected).
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=t.monitor, mode=mode, save_weights_only=False
    )
    history = HistoryCallback(run_dir / "history.csv")
    own: list[L.Callback] = [
        EarlyStopping(t.monitor, patience=t.patience, mode=mode),
        checkpoint,
        history,
        RandomState(generator),
        SaveLast(last_checkpoint(run_dir)),  # after the history row of the epoch is written
    ]
    # Redrawn bars in a terminal or a notebook; one line per epoch in a log (CI, nohup, a pipe). Lightning draws
    # its bars on standard output, so that is the stream that must be a terminal.
    bars = progress and (sys.stdout.isatty() or "ipykernel" in sys.modules)
    if bars:
        own.append(TQDMProgressBar(refresh_rate=10))
    elif progress:
        own.append(EpochLines(history))
    if t.unfreeze_at_epoch is not None:
        own.append(UnfreezeTrunk(t.unfreeze_at_epoch))
    if t.ema_decay is not None:
        # Validation, checkpoints and the final weights all use the averaged model.
        own.append(EMAWeightAveraging(decay=t.ema_decay))
    if loggers:
        own.append(LearningRateMonitor(logging_interval="epoch"))
    trainer = L.Trainer(
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        sync_batchnorm=t.sync_batchnorm,
        callbacks=[*own, *extra],
        logger=loggers or False,
        enable_progress_bar=bars,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        precision=_precision(t.precision),
        deterministic=False,
    )
    return trainer, checkpoint, history


def on_demo_data(cfg: RunConfig, data: Dataset) -> bool:
    """Whether the model learnt the synthetic drawn faces (recorded in ``model.pt``, so that it says so in use)."""
    return cfg.data.path == DEMO_DATA or is_demo_dataset(data.source)


def _check_selection(cfg: RunConfig, infos: list[SourceInfo]) -> None:
    """The monitored metric must exist on the selecting source (no val_ccc on a source without V/A)."""
    if len(infos) < 2:
        return
    select = cfg.train.select_source or infos[0].name
    chosen = [i for i in infos if i.name == select] or infos
    needs = {"val_accuracy": lambda i: bool(i.classes), "val_ccc": lambda i: i.has_va}.get(cfg.train.monitor)
    if needs is not None and not any(needs(i) for i in chosen):
        raise AffectlabError(
            f"train.monitor={cfg.train.monitor} cannot be measured on source {select} (it lacks those labels); "
            "choose train.select_source or another monitor"
        )


def _fit_keeping_ctrl_c(
    trainer: L.Trainer, lit: AffectLitModule, datamodule: FaceDataModule, ckpt_path: Path | None
) -> None:
    """``trainer.fit``, with Ctrl-C raised as KeyboardInterrupt (exit code 130 in the CLI, folders cleaned up).

    Lightning catches a KeyboardInterrupt, sets SIGINT to be ignored and calls ``sys.exit(1)``: the run would end
    with the exit code of a failure, and a study or test process could no longer be interrupted at all.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if in_main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*GPU available but not used.*")
            warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")  # a frozen trunk is meant to be
            warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")
            warnings.filterwarnings("ignore", ".*sync_dist=True.*")  # validation metrics are gathered before logging
            warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")  # metrics are per epoch
            # DeviceInputs runs in the LightningModule's on_after_batch_transfer, as meant; the data module has none.
            warnings.filterwarnings("ignore", ".*overridden `on_after_batch_transfer`.*LightningDataModule.*")
            trainer.fit(lit, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if in_main_thread and handler is not None:
            signal.signal(signal.SIGINT, handler)


def quiet_lightning(verbose: bool = False) -> None:
    """Lightning logs GPU/TPU availability and tips at INFO for every fit; keep the terminal to progress and results."""
    logging.getLogger("lightning.pytorch").setLevel(logging.INFO if verbose else logging.WARNING)


def _precision(setting: str) -> Any:
    if setting != "auto":
        return setting
    if not torch.cuda.is_available():
        return "32-true"
    # bf16 keeps fp32's range, so no loss scaling; fp16 with a scaler on GPUs that lack it.
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
