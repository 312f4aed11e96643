"""Score predictions against a split, and evaluate a saved run on its own or any other data."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from affectlab.atomic import write_json
from affectlab.config import ModelConfig, load_recipe
from affectlab.data.prepared import SplitData, prepare_data
from affectlab.data.split import load_split
from affectlab.data.transforms import Preprocess
from affectlab.errors import AffectlabError
from affectlab.evaluation.analysis import analyse
from affectlab.evaluation.metrics import classification_metrics, va_metrics
from affectlab.evaluation.predict import Outputs, predict_images
from affectlab.labels import EMOTIONS
from affectlab.models.checkpoint import load_checkpoint

__all__ = ["score", "evaluate_run"]

log = logging.getLogger(__name__)


def score(outputs: Outputs, data: SplitData, model: ModelConfig, split: str, tta_flip: bool) -> dict[str, Any]:
    """The metrics.json document: only the sections the task has, and only for labels the data has.

    It names the split and the flip TTA, so that a validation score is never mistaken for a test score, and ends
    with the ``analysis`` section: what is confused with what, and where the V/A error lies.
    """
    result: dict[str, Any] = {
        "task": model.task, "backbone": model.backbone, "weights": model.weights, "n": len(data),
        "split": split, "tta_flip": tta_flip,
    }
    if "probs" in outputs and (data.expression >= 0).all():
        result["classification"] = classification_metrics(data.expression, outputs["probs"], EMOTIONS)
    if "va" in outputs and not np.isnan(data.va).any():
        result.update(va_metrics(data.va, outputs["va"]))
    if not {"classification", "valence"} & result.keys():
        raise AffectlabError("the data has none of the labels this model predicts; nothing to score")
    scored_va = "valence" in result
    result["analysis"] = analyse(result.get("classification"), data.va if scored_va else None,
                                 outputs["va"] if scored_va else None, EMOTIONS)
    return result


def evaluate_run(
    run_dir: str | Path,
    data: str | None = None,
    split: str = "test",
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    batch_size: int = 64,
    tta_flip: bool | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluate a trained run; returns the metrics and the folder they were written to.

    ``tta_flip`` overrides the run's own flip test-time augmentation, to measure what it buys.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise AffectlabError(f"{run_dir}: not a run folder (no config.yaml)")
    if split not in ("test", "val", "all"):
        raise AffectlabError(f"unknown split {split!r}; use test, val or all")
    cfg = load_recipe(run_dir / "config.yaml")
    model, meta = load_checkpoint(run_dir)
    preprocess = Preprocess.from_dict(meta["preprocess"])
    data_cfg = replace(cfg.data, path=data) if data else cfg.data
    if split == "all":
        which = "all"
    else:
        if data:
            raise AffectlabError("--data with --split test|val would need the run's split of that data; use --split all")
        data_cfg = replace(data_cfg, split_file=str(run_dir / "split.json"))
        load_split(data_cfg.split_file)
        which = split
    prepared = prepare_data(data_cfg, preprocess.input_size, splits=(which,))
    part = prepared.splits[which]
    tta = cfg.train.tta_flip if tta_flip is None else tta_flip
    outputs = predict_images(model, part.images, preprocess, batch_size, tta_flip=tta)
    metrics = score(outputs, part, cfg.model, split, tta)
    metrics["data"] = prepared.source
    default_target = run_dir if not data and split == "test" else run_dir / f"eval-{split}-{_slug(data_cfg.path)}"
    target = Path(out_dir) if out_dir else default_target
    if (target / "metrics.json").exists() and not overwrite:
        raise AffectlabError(f"{target / 'metrics.json'}: exists; pass --overwrite to replace it")
    write_json(target / "metrics.json", metrics)
    from affectlab.reports.run_figures import write_evaluation_figures

    write_evaluation_figures(target, metrics, outputs, part, title=f"{cfg.model.backbone} {cfg.model.task} ({split})")
    return metrics, target


def _slug(path: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(path).name or "data")
