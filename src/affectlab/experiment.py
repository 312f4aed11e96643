"""One experiment = train on the train split, select on val, score the test split once, write the run folder.

Ablations score the validation split instead (``eval_split="val"``), so that comparing recipe levers never
touches the test split. A study also measures each model's size and speed (``efficiency=True``).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

from affectlab.atomic import is_run_folder, write_json, write_run_marker, write_text
from affectlab.config import RunConfig
from affectlab.data.prepared import PreparedData, SplitData
from affectlab.data.split import save_split
from affectlab.evaluation.efficiency import measure_model
from affectlab.evaluation.evaluate import score
from affectlab.evaluation.predict import Outputs, predict_features, predict_images
from affectlab.labels import EMOTIONS
from affectlab.models.checkpoint import checkpoint_meta
from affectlab.models.registry import get_backbone_spec
from affectlab.models.weights import weights_label
from affectlab.reports.plots import plot_training_curves
from affectlab.reports.run_figures import FIGURE_NAMES, write_evaluation_figures
from affectlab.training.distributed import is_main_process
from affectlab.training.features import FeatureCache
from affectlab.training.fit import split_features, train_model

__all__ = ["describe_weights", "run_experiment"]

log = logging.getLogger(__name__)


def describe_weights(backbone: str, weights: str) -> str:
    """Human wording for reports: which weights a run really started from."""
    if weights == "imagenet":
        return f"ImageNet, real ({weights_label(get_backbone_spec(backbone), weights)})"
    if weights == "none":
        return "random init (no pretraining)"
    return f"file {weights}"


def run_experiment(
    cfg: RunConfig,
    data: PreparedData,
    run_dir: str | Path,
    cache: FeatureCache | None = None,
    progress: bool = True,
    eval_split: str = "test",
    resume: bool = False,
    name: str | None = None,
    efficiency: bool = False,
) -> dict[str, Any]:
    """Train, score ``eval_split`` (test by default), and return the study's record for this run.

    ``resume`` continues a killed training in ``run_dir``; ``name`` is the run's name in the record (default: the
    folder's name, which differs when ``--overwrite`` builds the run in a temporary folder). With ``efficiency``,
    the record also gets the model's size, FLOPs and speed (and ``model.onnx`` is written), timed on the scored
    split's faces.

    Under DDP only rank zero scores and writes; the other ranks return an empty record once training is done.
    """
    if eval_split not in ("test", "val"):
        raise ValueError(f"eval_split must be test or val, not {eval_split!r}")
    run_dir = Path(run_dir)
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        if not is_run_folder(run_dir):
            write_run_marker(run_dir, "experiment")
        save_split(data.split, run_dir / "split.json")
    result = train_model(cfg, data, run_dir, cache, progress, resume=resume)
    if not is_main_process():
        return {}
    scored = data.splits[eval_split]
    if result.used_feature_cache and not cfg.train.tta_flip:
        features = split_features(cfg, scored, result.model, result.preprocess, cache or FeatureCache())
        outputs = predict_features(result.model, features)
    else:
        outputs = predict_images(result.model, scored.images, result.preprocess, tta_flip=cfg.train.tta_flip)
    metrics = score(outputs, scored, cfg.model, eval_split, cfg.train.tta_flip)
    write_json(run_dir / "metrics.json", metrics)
    write_predictions(run_dir / "predictions.csv", scored, outputs)
    plot_training_curves(result.history, run_dir / FIGURE_NAMES["curves"])
    write_evaluation_figures(run_dir, metrics, outputs, scored, title=f"{cfg.model.backbone} {cfg.model.task}")
    record = {
        "name": name or run_dir.name,
        "backbone": cfg.model.backbone,
        "task": cfg.model.task,
        "weights": cfg.model.weights,
        "weights_description": describe_weights(cfg.model.backbone, cfg.model.weights),
        "seed": cfg.train.seed,
        "metrics": metrics,
        "train_seconds": round(result.train_seconds, 2),
        "feature_seconds": round(result.feature_seconds, 2),
        "used_feature_cache": result.used_feature_cache,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
    }
    if efficiency:
        meta = checkpoint_meta(cfg.model, result.preprocess)
        # On the CPU, where ONNX Runtime runs too, whatever device trained the model.
        record["efficiency"] = measure_model(result.model.cpu(), meta, run_dir, scored.images)
    return record


def write_predictions(path: Path, split: SplitData, outputs: Outputs) -> Path:
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
