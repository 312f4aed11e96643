"""Experiment tracking through Lightning's own loggers (``train.logger``), beside the history.csv of every run.

``csv`` (the default) adds nothing: ``history.csv`` is written by ``HistoryCallback`` whatever the logger.
``tensorboard`` and ``mlflow`` get the resolved recipe as hyper-parameters when training starts, the per-epoch
curves as the LightningModule logs them (``self.log``) and the learning rate, and once the run is scored its test
metrics, its figures and its model card. The Trainer's ``logger=`` list is the only place they enter, so the
training code never asks which store it writes to.

TensorBoard writes into the run folder (``<run>/tensorboard/``), so that ``tensorboard --logdir`` on a study's
folder shows each of its runs by name. MLflow writes where MLflow itself would (``$MLFLOW_TRACKING_URI``, else a
SQLite store ``mlflow.db`` with artifacts in ``mlruns/`` in the current folder, which ``mlflow ui`` opens there),
so that every training and every study lands in one store where their runs can be compared; MLflow's file store
(``./mlruns`` alone) is refused by MLflow 3 unless its opt-out is set. A study's runs share one experiment, named
after the study's folder; a run trained on its own goes to the experiment ``affectlab``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger

from affectlab.config import TrainConfig
from affectlab.errors import AffectlabError
from affectlab.extras import require

__all__ = ["DEFAULT_EXPERIMENT", "Tracking", "finish_loggers", "make_loggers", "mlflow_uri", "require_logger"]

#: The experiment of a run trained on its own (``affectlab train``); a study's runs go to the study's.
DEFAULT_EXPERIMENT = "affectlab"
_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")


@dataclass(frozen=True)
class Tracking:
    """Under which names a run is logged: its experiment (a study's runs share one), its run name, and the run
    folder where it ends up (recorded as a tag, so that a tracked run leads back to its files)."""

    experiment: str
    run: str
    folder: str | None = None


def mlflow_uri(t: TrainConfig) -> str:
    """The MLflow tracking URI a run logs to: ``train.logger_uri``, else ``$MLFLOW_TRACKING_URI``, else MLflow's
    own default, a SQLite file ``mlflow.db`` in the current folder (named absolutely, as the run may chdir)."""
    return t.logger_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path.cwd() / 'mlflow.db').as_posix()}"


def require_logger(t: TrainConfig) -> None:
    """Stop, in one line naming the extra to install, when the configured logger's package is missing (called
    before the data is read, so that a missing package costs no time)."""
    if t.logger == "tensorboard":
        require("tensorboard", "train.logger=tensorboard", "tensorboard")
    elif t.logger == "mlflow":
        require("mlflow", "train.logger=mlflow", "mlflow")
        if mlflow_uri(t).split(":", 1)[0].split("+", 1)[0] in _DATABASES:  # MLflow's database store
            require("sqlalchemy", f"an MLflow store at {mlflow_uri(t)}", "mlflow")
            require("alembic", f"an MLflow store at {mlflow_uri(t)}", "mlflow")


def make_loggers(t: TrainConfig, run_dir: Path, tracking: Tracking, hyperparams: dict[str, Any]) -> list[Logger]:
    """The Trainer's loggers for ``t.logger`` (none for csv), with ``hyperparams`` (the resolved recipe) logged."""
    if t.logger == "csv":
        return []
    require_logger(t)
    logger: Logger
    if t.logger == "tensorboard":
        if t.logger_uri:  # one folder for many runs: <folder>/<experiment>/<run>
            logger = TensorBoardLogger(
                t.logger_uri, name=tracking.experiment, version=tracking.run, default_hp_metric=False
            )
        else:
            logger = TensorBoardLogger(run_dir, name="tensorboard", version="", default_hp_metric=False)
    else:
        logger = _mlflow_logger(t, tracking)
    logger.log_hyperparams(hyperparams)
    return [logger]


def _mlflow_logger(t: TrainConfig, tracking: Tracking) -> Logger:
    from mlflow.exceptions import MlflowException

    uri = mlflow_uri(t)
    tags = {"affectlab.run_folder": tracking.folder} if tracking.folder else None
    try:
        logger = MLFlowLogger(experiment_name=tracking.experiment, run_name=tracking.run, tracking_uri=uri, tags=tags)
        _ = logger.run_id  # creates the experiment and the run now: a bad store stops before training, not after
    except (MlflowException, OSError) as exc:
        raise AffectlabError(f"train.logger_uri {uri}: {str(exc).splitlines()[0]}") from None
    return logger


def finish_loggers(
    loggers: list[Logger],
    folder: Path,
    metrics: dict[str, Any],
    hyperparams: dict[str, Any],
    card: str | None = None,
) -> None:
    """Log a scored run's metrics (``metrics.json``'s top-level numbers of each section, as ``<split>/<section>/
    <name>``), its figures (the PNGs of ``folder``) and its model card (Markdown), then close the loggers."""
    numbers = test_numbers(metrics)
    figures = sorted(folder.glob("*.png"))
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hyperparams, metrics=numbers)  # HPARAMS tab: the recipe beside its test metrics
            writer = logger.experiment
            for path in figures:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is not None:
                    writer.add_image(f"figures/{path.stem}", image[:, :, ::-1], dataformats="HWC")  # RGB
            if card:
                writer.add_text("model_card", card)
        elif isinstance(logger, MLFlowLogger):  # the files themselves, as artifacts of the run
            logger.log_metrics(numbers)
            client, run_id = logger.experiment, logger.run_id
            for path in figures:
                client.log_artifact(run_id, str(path), "figures")
            for name in ("config.yaml", "metrics.json", "history.csv", "run.json"):
                if (folder / name).is_file():
                    client.log_artifact(run_id, str(folder / name))
            if card:
                client.log_text(run_id, card, "MODEL_CARD.md")
        logger.finalize("success")


def test_numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The top-level numbers of each section of a ``metrics.json`` (accuracy, macro F1, CCC, RMSE, ...; not the
    per-class tables), named ``<split>/<section>/<name>``."""
    split = metrics.get("split") or "test"
    numbers = {}
    for section, values in metrics.items():
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                numbers[f"{split}/{section}/{name}"] = float(value)
    return numbers
