"""The study: every backbone x task on one shared split, then a comparison report.

Reproduces the reference protocol by default (frozen ImageNet trunks, the study's head, 12 epochs, early stopping)
and accepts any recipe for the cells. With several seeds, each seed draws its own split and the report gives
mean +- std, so that a claim never rests on one lucky split.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectlab.atomic import run_folder, write_json
from affectlab.config import TASKS, RunConfig
from affectlab.data.prepared import prepare_data
from affectlab.errors import AffectlabError
from affectlab.experiment import run_experiment
from affectlab.models.registry import get_backbone_spec
from affectlab.reports.study_report import write_study_report
from affectlab.reports.tradeoff import tradeoff_panels
from affectlab.training.features import FeatureCache

__all__ = ["run_study", "aggregate_runs", "SUMMARY_METRICS"]

log = logging.getLogger(__name__)

SUMMARY_METRICS = {
    "classification": ("accuracy", "f1_weighted", "f1_macro", "cohen_kappa", "auc_ovr"),
    "valence": ("rmse", "corr", "sagr", "ccc"),
    "arousal": ("rmse", "corr", "sagr", "ccc"),
}


def run_study(
    base: RunConfig,
    out_dir: str | Path,
    backbones: list[str],
    tasks: list[str],
    weights: dict[str, str],
    seeds: list[int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    cache: FeatureCache | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the study into ``out_dir``; ``command`` is recorded in its run marker (default: this process's)."""
    for backbone in backbones:
        get_backbone_spec(backbone)
    for task in tasks:
        if task not in TASKS:
            raise AffectlabError(f"unknown task {task!r}; use {', '.join(TASKS)}")
    seeds = seeds or [base.data.split_seed]
    with run_folder(out_dir, overwrite, keep_if="summary.json", kind="study", command=command) as folder:  # summary.json: a model has finished
        handler = _log_to(folder / "study.log")
        try:
            summary = _run_cells(base, folder, backbones, tasks, weights, seeds, progress, cache)
        finally:
            logging.getLogger("affectlab").removeHandler(handler)
            handler.close()
        write_study_report(folder, summary)
    return summary


def _run_cells(
    base: RunConfig,
    out_dir: Path,
    backbones: list[str],
    tasks: list[str],
    weights: dict[str, str],
    seeds: list[int],
    progress: bool,
    cache: FeatureCache | None,
) -> dict[str, Any]:
    """Train every backbone x task per seed, rewriting the summary as each cell finishes."""
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    splits: dict[str, Any] = {}
    data_summary: dict[str, Any] = {}
    stage_seconds: dict[str, float] = {}
    for seed in seeds:
        t0 = time.perf_counter()
        data_cfg = replace(base.data, split_seed=seed)
        prepared = prepare_data(data_cfg, base.model.input_size)
        stage_seconds[f"data_seed{seed}"] = round(time.perf_counter() - t0, 2)
        splits[str(seed)] = {k: v for k, v in prepared.split.items() if k not in ("train", "val", "test")}
        data_summary = prepared.summary()
        log.info("data: %s", data_summary)
        for backbone in backbones:
            for task in tasks:
                cfg = replace(
                    base,
                    data=data_cfg,
                    model=replace(base.model, backbone=backbone, task=task, weights=weights.get(backbone, base.model.weights)),
                    train=replace(base.train, seed=seed),
                )
                name = f"{backbone}_{task}" + (f"_seed{seed}" if len(seeds) > 1 else "")
                log.info("run %s", name)
                t0 = time.perf_counter()
                record = run_experiment(cfg, prepared, out_dir / name, cache, progress, efficiency=True)
                record["wall_seconds"] = round(time.perf_counter() - t0, 2)
                log.info("done %s in %.1f s", name, record["wall_seconds"])
                runs.append(record)
                _write_summary(out_dir, base, runs, splits, data_summary, stage_seconds, started)
    return _write_summary(out_dir, base, runs, splits, data_summary, stage_seconds, started)


def _write_summary(
    out_dir: Path,
    base: RunConfig,
    runs: list[dict[str, Any]],
    splits: dict[str, Any],
    data_summary: dict[str, Any],
    stage_seconds: dict[str, float],
    started: float,
) -> dict[str, Any]:
    only = next(iter(splits.values()))
    summary = {
        "runs": runs,
        "split": only if len(splits) == 1 else splits,
        "aggregate": aggregate_runs(runs),
        "tradeoff": [panel.to_dict() for panel in tradeoff_panels({"runs": runs})],
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
    """Mean and std of every headline metric per (backbone, task, weights) over seeds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["backbone"], run["task"], run["weights"]), []).append(run)
    out = []
    for (backbone, task, weights), members in groups.items():
        entry: dict[str, Any] = {"backbone": backbone, "task": task, "weights": weights, "seeds": [m["seed"] for m in members]}
        for section, keys in SUMMARY_METRICS.items():
            for key in keys:
                values = [m["metrics"][section][key] for m in members if section in m["metrics"]]
                values = [v for v in values if v is not None]
                if values:
                    entry[f"{section}.{key}"] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
        out.append(entry)
    return out


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("affectlab").addHandler(handler)
    logging.getLogger("affectlab").setLevel(logging.INFO)
    return handler
