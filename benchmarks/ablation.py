"""One lever at a time: what each part of a recipe buys, measured on the validation split.

Usage:
    python benchmarks/ablation.py --data ../shared/data/affectnet-3999 --out /tmp/ablation
        [--recipe best] [--seed 0] [--variants no_tta,frozen,res128,...] [--reuse-baseline RUN_DIR]
        [--set train.num_workers=8 ...]

Every variant is the recipe with one setting changed, trained on the same split (seed) and scored on the
validation split, never on test: an ablation is model selection, and the test split is kept for the final
3-seed report (``benchmarks/accuracy.py``). ``no_tta`` needs no training: it scores the baseline model without
flip test-time augmentation. ``--reuse-baseline`` takes an existing run of the same recipe and seed (for example
seed 0 of ``benchmarks/accuracy.py``) instead of training the baseline again; its config must match exactly.
Finished variants are kept and reused on a rerun, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import affectlab
from affectlab.atomic import write_json, write_text
from affectlab.config import RunConfig, load_recipe, resolve_config, with_overrides
from affectlab.evaluation.evaluate import Metrics
from affectlab.models.checkpoint import load_checkpoint
from affectlab.reports.study_report import markdown_table
from affectlab.training.fit import quiet_lightning

#: name -> (what changes, overrides as "section.key": value). Ordered roughly by cost, cheapest first.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    # Not a lever: the same recipe and split with another training seed. Its delta is the run-to-run noise that
    # any lever's delta must clear before it means something.
    "reseed": ("same recipe and split, training seed + 1", {}),
    "no_tta": ("no flip test-time augmentation (same model)", {"train.tta_flip": False}),
    "frozen": ("frozen ImageNet trunk, head only", {"model.freeze": True}),
    "res128": ("input 128 px instead of 160", {"model.input_size": 128}),
    "no_augment": ("no train-time augmentation", {"train.augment": False}),
    "no_ema": ("no EMA of weights", {"train.ema_decay": None}),
    "mse_only": ("MSE only for valence/arousal (no CCC term)", {"train.va_loss": "mse"}),
    "no_smoothing": ("no label smoothing", {"train.label_smoothing": 0.0}),
    "same_lr": ("trunk at the head's learning rate", {"train.backbone_lr": None}),
    "sampler": ("class-balanced sampler instead of class weights", {"train.sampler": "balanced"}),
    "select_val_loss": ("select and stop on validation loss", {"train.monitor": "val_loss"}),
    "res192": ("input 192 px instead of 160", {"model.input_size": 192}),
    "res224": ("input 224 px instead of 160", {"model.input_size": 224}),
    "long": ("30 epochs, patience 10", {"train.epochs": 30, "train.patience": 10}),
}
DEFAULT_VARIANTS = "no_tta,frozen,res128,no_augment,no_ema,mse_only"
COLUMNS = (
    "variant",
    "change",
    "acc",
    "F1 macro",
    "kappa",
    "AUC",
    "CCC V/A",
    "RMSE V/A",
    "val score",
    "Δ score",
    "best epoch",
    "train s",
)


def variant_config(cfg: RunConfig, name: str) -> RunConfig:
    _, overrides = VARIANTS[name]
    if name == "reseed":
        overrides = {"train.seed": cfg.train.seed + 1}
    return with_overrides(cfg, overrides)


def val_score(metrics: dict[str, Any]) -> float:
    """The recipe's selection criterion, as training computes it: accuracy plus mean valence/arousal CCC."""
    return Metrics.from_dict(metrics).val_score


def _row(name: str, change: str, record: dict[str, Any], baseline: float | None) -> list[str]:
    m = record["metrics"]
    c = m["classification"]
    score = val_score(m)
    delta = "-" if baseline is None else f"{score - baseline:+.3f}"
    return [
        name,
        change,
        f"{c['accuracy']:.3f}",
        f"{c['f1_macro']:.3f}",
        f"{c['cohen_kappa']:.3f}",
        f"{c['auc_ovr']:.3f}",
        f"{m['valence']['ccc']:.3f}/{m['arousal']['ccc']:.3f}",
        f"{m['valence']['rmse']:.3f}/{m['arousal']['rmse']:.3f}",
        f"{score:.3f}",
        delta,
        str(record.get("best_epoch", "-")),
        f"{record.get('train_seconds', 0):.0f}",
    ]


class Sweep:
    """Trains and scores variants on one split, keeping finished ones so that a rerun resumes."""

    def __init__(self, base: RunConfig, out: Path, overwrite: bool) -> None:
        self.base, self.out, self.overwrite = base, out, overwrite

    def record(self, name: str, cfg: RunConfig) -> dict[str, Any]:
        done = self.out / name / "run.json"
        if done.is_file() and not self.overwrite:
            return json.loads(done.read_text())
        # An unfinished variant has nothing to keep; affectlab.train writes run.json when it finishes.
        run = affectlab.train(cfg, out=self.out / name, overwrite=True, progress=False, eval_split="val")
        assert run is not None
        return run.to_dict()

    def baseline(self, reuse: Path | None) -> dict[str, Any]:
        if reuse is None:
            return self.record("baseline", self.base)
        theirs, ours = load_recipe(reuse / "config.yaml"), self.base.single_run()
        differ = [k for k in ("data", "model", "train") if getattr(theirs, k) != getattr(ours, k)]
        if differ:
            raise SystemExit(f"{reuse}: trained with a different config ({', '.join(differ)} differ); not reusable")
        metrics = affectlab.evaluate(reuse, split="val", out=self.out / "baseline", overwrite=True)
        _, meta = load_checkpoint(reuse)
        seconds = float(meta.history[-1]["seconds"])  # history.csv counts seconds from the start of fit
        return {
            "metrics": metrics.to_dict(),
            "best_epoch": meta.best_epoch,
            "train_seconds": seconds,
            "run_dir": str(reuse),
        }

    def without_tta(self, baseline_dir: Path) -> dict[str, Any]:
        metrics = affectlab.evaluate(baseline_dir, split="val", out=self.out / "no_tta", overwrite=True, tta_flip=False)
        return {"metrics": metrics.to_dict(), "best_epoch": "same", "train_seconds": 0}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--recipe", default="best", help="a packaged recipe's name or a recipe file")
    parser.add_argument("--seed", type=int, default=0, help="split and training seed")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma list of: {', '.join(VARIANTS)}")
    parser.add_argument("--reuse-baseline", type=Path, help="a finished run of the same recipe and seed")
    parser.add_argument("--overwrite", action="store_true", help="retrain variants that already finished")
    parser.add_argument(
        "--set",
        action="append",
        dest="overrides",
        metavar="SECTION.KEY=VALUE",
        help="change the recipe for every variant, e.g. train.num_workers=8 on a GPU machine",
    )
    args = parser.parse_args(argv)
    quiet_lightning()
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    cfg = resolve_config(args.recipe, {"data.path": args.data, "seed": args.seed}, args.overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sweep = Sweep(cfg, out, args.overwrite)
    started = time.perf_counter()
    base = sweep.baseline(args.reuse_baseline)
    baseline_dir = args.reuse_baseline or out / "baseline"
    reference = val_score(base["metrics"])
    rows = [_row("baseline", f"{args.recipe} as is (seed {args.seed})", base, None)]
    records = {"baseline": base}
    for name in names:
        change, _ = VARIANTS[name]
        if name == "no_tta":
            record = sweep.without_tta(baseline_dir)
        else:
            record = sweep.record(name, variant_config(cfg, name))
        records[name] = record
        rows.append(_row(name, change, record, reference))
        print(
            f"{name}: val score {val_score(record['metrics']):.3f} ({time.perf_counter() - started:.0f} s so far)",
            flush=True,
        )
    n = base["metrics"]["n"]
    table = markdown_table(COLUMNS, rows) + "\n"
    table += f"Validation split ({n} images) of split seed {args.seed}; val score = accuracy + mean V/A CCC.\n"
    write_text(out / "ablation.md", table)
    write_json(out / "ablation.json", {"recipe": args.recipe, "seed": args.seed, "variants": records})
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
