"""The study: every backbone x task on one shared split, then a comparison report.

Reproduces the reference protocol by default (frozen ImageNet trunks, the study's head, 12 epochs, early stopping)
and accepts any recipe for the cells. With several seeds, each seed draws its own split and the report gives
mean ± sample SD (``reports.run_groups``), so that a claim never rests on one lucky split; a converted dataset
holds one split, so a study of several seeds on it is refused before the first model trains.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from affectlab.atomic import run_folder, write_json, write_text
from affectlab.config import RunConfig
from affectlab.data.dataset import check_split_seeds, open_dataset
from affectlab.experiment import Run, finish_tracking, run_experiment
from affectlab.models.backbones import get_backbone_spec
from affectlab.reports.run_groups import summarise_runs
from affectlab.reports.study_report import write_study_report
from affectlab.reports.tradeoff import tradeoff_panels
from affectlab.training.features import FeatureCache
from affectlab.training.loggers import Tracking, require_logger

__all__ = ["SUMMARY_METRICS", "Study", "aggregate_runs", "run_study"]

log = logging.getLogger(__name__)

SUMMARY_METRICS = {
    "classification": ("accuracy", "f1_weighted", "f1_macro", "cohen_kappa", "auc_ovr"),
    "valence": ("rmse", "corr", "sagr", "ccc"),
    "arousal": ("rmse", "corr", "sagr", "ccc"),
    "robustness": (
        "accuracy_relative",
        "valence_ccc_relative",
        "arousal_ccc_relative",
        "damaged_mean.ece",
        "damaged_mean.set_coverage",
    ),
    "faces_in_scenes": (
        "found_share",
        "false_boxes",
        "end_to_end.accuracy",
        "accuracy_ratio",
        "end_to_end.valence_ccc",
        "end_to_end.arousal_ccc",
    ),
    "confidence": (
        "temperature",
        "before.ece",
        "after.ece",
        "before.nll",
        "after.nll",
        "after.aurc",
        "sets.coverage",
        "sets.mean_size",
        "intervals.valence.coverage",
        "intervals.valence.mean_width",
        "intervals.arousal.coverage",
        "intervals.arousal.mean_width",
    ),
}


@dataclass
class Study:
    """A finished study: its folder, its runs, and the summary (``to_dict()`` is ``summary.json``)."""

    path: Path
    runs: list[Run]
    summary: dict[str, Any] = field(repr=False)

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def to_dict(self) -> dict[str, Any]:
        return self.summary


def run_study(
    cfg: RunConfig,
    out_dir: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    cache: FeatureCache | None = None,
    command: str | None = None,
) -> Study:
    """Train ``cfg.study``'s grid into ``out_dir``; ``command`` is recorded in its run marker (default: this
    process's). The resolved config, grid included, is saved as ``study.yaml``, a recipe that repeats the study."""
    for backbone in cfg.study.backbones:
        get_backbone_spec(backbone)
    check_split_seeds(cfg.data, cfg.seeds())
    require_logger(cfg.train)
    with run_folder(
        out_dir, overwrite, keep_if="summary.json", kind="study", command=command
    ) as folder:  # summary.json: a model has finished
        write_text(folder / "study.yaml", cfg.to_yaml())
        handler = _log_to(folder / "study.log")
        try:
            runs, summary = _run_cells(cfg, folder, progress, cache, Path(out_dir).resolve())
        finally:
            logging.getLogger("affectlab").removeHandler(handler)
            handler.close()
        write_study_report(folder, summary)
    return Study(Path(out_dir), runs, summary)


def _run_cells(
    base: RunConfig, out_dir: Path, progress: bool, cache: FeatureCache | None, final: Path
) -> tuple[list[Run], dict[str, Any]]:
    """Train every backbone x task per seed, rewriting the summary as each cell finishes. Each run is tracked
    (``train.logger``) in one experiment named after the study's folder (``final``, where it ends up)."""
    started = time.perf_counter()
    runs: list[Run] = []
    splits: dict[str, Any] = {}
    data_summary: dict[str, Any] = {}
    stage_seconds: dict[str, float] = {}
    seeds = base.seeds()
    for seed in seeds:
        t0 = time.perf_counter()
        data_cfg = base.cell(base.model.backbone, base.model.task, seed).data
        prepared = open_dataset(data_cfg, base.model.input_size)
        stage_seconds[f"data_seed{seed}"] = round(time.perf_counter() - t0, 2)
        splits[str(seed)] = _without_ids(prepared.assignment)
        data_summary = prepared.summary()
        log.info("data: %s", data_summary)
        for backbone in base.study.backbones:
            for task in base.study.tasks:
                source_sets: list[list[str] | None] = [base.data.train_on]
                if base.study.source_sets:
                    source_sets = list(base.study.source_sets)
                for trained_on in source_sets:
                    cell = base.cell(backbone, task, seed)
                    cfg = dataclasses.replace(cell, data=dataclasses.replace(cell.data, train_on=trained_on))
                    name = f"{backbone}_{task}" + (f"_on-{'+'.join(trained_on)}" if trained_on else "")
                    name += f"_seed{seed}" if len(seeds) > 1 else ""
                    log.info("run %s", name)
                    t0 = time.perf_counter()
                    tracking = Tracking(final.name, name, str(final / name))
                    run = run_experiment(
                        cfg, prepared, out_dir / name, cache, progress, efficiency=True, tracking=tracking
                    )
                    assert run is not None  # a study trains on one device, so this process is rank zero
                    run.wall_seconds = round(time.perf_counter() - t0, 2)
                    # The run's own record, with the data it was trained on (its model card names them), as train
                    # writes.
                    write_json(out_dir / name / "run.json", {**run.to_dict(), "data": data_summary})
                    finish_tracking(run, out_dir / name)
                    log.info("done %s in %.1f s", name, run.wall_seconds)
                    runs.append(run)
                    _write_summary(out_dir, base, runs, splits, data_summary, stage_seconds, started)
    return runs, _write_summary(out_dir, base, runs, splits, data_summary, stage_seconds, started)


def _without_ids(split: dict[str, Any]) -> dict[str, Any]:
    """A split's seed, fractions and counts (per source too), without its id lists (those are in split.json)."""
    kept = {k: v for k, v in split.items() if k not in ("train", "val", "test", "sources")}
    if "sources" in split:
        kept["sources"] = {name: _without_ids(part) for name, part in split["sources"].items()}
    return kept


def _write_summary(
    out_dir: Path,
    base: RunConfig,
    runs: list[Run],
    splits: dict[str, Any],
    data_summary: dict[str, Any],
    stage_seconds: dict[str, float],
    started: float,
) -> dict[str, Any]:
    only = next(iter(splits.values()))
    records = [run.to_dict() for run in runs]
    summary = {
        "runs": records,
        "split": only if len(splits) == 1 else splits,
        "aggregate": aggregate_runs(records),
        "tradeoff": [panel.to_dict() for panel in tradeoff_panels({"runs": records})],
        "data": data_summary,
        "config": base.to_dict(),
        "timing": {"total_seconds": round(time.perf_counter() - started, 2), "stages": stage_seconds},
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,  # GPU and CPU timings differ
        },
    }
    write_json(out_dir / "summary.json", summary)
    return summary


def aggregate_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample SD (``std``: n - 1, None for one seed; ``reports.run_groups``) of every headline metric
    per (backbone, task, weights, training sources) over seeds."""
    groups: dict[tuple[str, str, str, tuple[str, ...]], list[dict[str, Any]]] = {}
    for run in runs:
        group = (run["backbone"], run["task"], run["weights"], tuple(run.get("trained_on", ())))
        groups.setdefault(group, []).append(run)
    figures = {
        f"{section}.{key}": ("metrics", section, *key.split("."))
        for section, keys in SUMMARY_METRICS.items()
        for key in keys
    }
    spreads = summarise_runs(groups, figures)
    out = []
    for (backbone, task, weights, trained_on), members in groups.items():
        entry: dict[str, Any] = {
            "backbone": backbone,
            "task": task,
            "weights": weights,
            "seeds": [m["seed"] for m in members],
        }
        if trained_on:  # several sources: models trained on different sources are different rows
            entry["trained_on"] = list(trained_on)
        for name, value in spreads[(backbone, task, weights, trained_on)].items():
            entry[name] = {"mean": value.mean, "std": value.sd, "n": value.n}
        out.append(entry)
    return out


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("affectlab").addHandler(handler)
    logging.getLogger("affectlab").setLevel(logging.INFO)
    return handler
