"""Reference recipe vs best recipe on one data folder, as one table in the units of the published figures.

Usage:
    python benchmarks/accuracy.py --data ../shared/data/affectnet-3999 --out /tmp/accuracy [--seeds 0,1,2]
        [--recipes reference,best] [--set train.num_workers=8 ...]

Each recipe runs through ``affectlab study`` (one split per seed, model selection on validation, test scored once
per model); the table gives test mean ± sample SD over seeds (``affectlab.reports.run_groups``) next to the
published results on the 3,999-image set, and says the intra-op thread counts the runs trained with.
Needs the ImageNet MobileNetV2 weights in ``$TORCH_HOME/hub/checkpoints`` (see ../shared/weights/README.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import affectlab
from affectlab.config import load_recipe
from affectlab.reports.run_groups import sd_caption, threads_of
from affectlab.reports.study_report import markdown_table
from affectlab.training.fit import quiet_lightning

#: Published results on the same 3,999 images (../shared/data/affectnet-3999/SOURCE.md); most use 80/20 splits.
PUBLISHED = [
    ("ResNet50 VGGFace2 (muhammadhaider02 RESULTS.md)", ".529", ".524", ".461", ".882", ".373/.319", ".585/.470", "-"),
    ("ResNet18 (muhammadhaider02 RESULTS.md)", ".501", ".500", ".430", ".823", ".387/.328", ".549/.458", "-"),
    ("MobileNetV3-L (rameenbabar model_comparison.csv)", ".486", ".480", ".411", ".818", ".403/.349", ".480/.344", "-"),
    ("ResNet50 (Areeba907 results/summary.json)", ".463", ".464", ".385", ".842", ".384/.348", ".527/.365", "-"),
    ("MobileNetV2 (maryamss-hub README)", ".448", ".440", ".369", ".831", ".370 (mean)", ".490 (mean)", "-"),
    ("Reference study MobileNetV2 (frozen)", ".320", ".301*", ".223", ".730", ".445/.356", "-", ".291/.315"),
]
COLUMNS = ("model", "acc", "F1 macro", "kappa", "AUC", "RMSE V/A", "CCC V/A", "CORR V/A", "train s")


def _cell(agg: dict, key: str) -> str:  # type: ignore[type-arg]
    value = agg.get(key)
    if value is None:
        return "-"
    return f"{value['mean']:.3f}±{value['std']:.3f}" if value["n"] > 1 else f"{value['mean']:.3f}"


def _rows(name: str, summary: dict) -> list[list[str]]:  # type: ignore[type-arg]
    aggregates = summary["aggregate"]
    merged: dict = {}  # type: ignore[type-arg]
    for agg in aggregates:  # the reference trains one model per task; show them on one line
        merged.update({k: v for k, v in agg.items() if "." in k})
    seconds = sum(r["train_seconds"] for r in summary["runs"]) / max(1, len({r["seed"] for r in summary["runs"]}))
    tasks = "+".join(sorted({a["task"] for a in aggregates}))
    return [
        [
            f"{name} ({tasks})",
            _cell(merged, "classification.accuracy"),
            _cell(merged, "classification.f1_macro"),
            _cell(merged, "classification.cohen_kappa"),
            _cell(merged, "classification.auc_ovr"),
            f"{_cell(merged, 'valence.rmse')}/{_cell(merged, 'arousal.rmse')}",
            f"{_cell(merged, 'valence.ccc')}/{_cell(merged, 'arousal.ccc')}",
            f"{_cell(merged, 'valence.corr')}/{_cell(merged, 'arousal.corr')}",
            f"{seconds:.0f}",
        ]
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--recipes", default="reference,best", help="packaged recipe names or recipe files")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--set",
        action="append",
        dest="overrides",
        metavar="SECTION.KEY=VALUE",
        help="change every recipe, e.g. train.num_workers=8 on a GPU machine",
    )
    args = parser.parse_args(argv)
    quiet_lightning()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: list[list[str]] = []
    threads: list[str] = []
    for recipe in args.recipes.split(","):
        model = load_recipe(recipe).model  # the recipe's own backbone, on both tasks unless it is multitask
        tasks = ["classification", "regression"] if model.task != "multitask" else ["multitask"]
        started = time.perf_counter()
        study = affectlab.study(
            recipe,
            data=args.data,
            out=Path(args.out) / Path(recipe).stem,
            overwrite=args.overwrite,
            progress=False,
            sets=args.overrides,
            backbones=[model.backbone],
            tasks=tasks,
            seeds=seeds,
        )
        summary = study.to_dict()
        print(f"{recipe}: {time.perf_counter() - started:.0f} s for seeds {seeds} on {summary['machine']}", flush=True)
        rows += _rows(Path(recipe).stem, summary)
        threads.append(f"{threads_of(summary['runs'])} ({Path(recipe).stem})")
    rows += [[*p, "-"] for p in PUBLISHED]
    print(f"{sd_caption(len(seeds))}; runs trained with {', '.join(threads)} intra-op threads")
    print(markdown_table(COLUMNS, rows))
    print("* the reference study reports weighted F1. Published rows: ../shared/data/affectnet-3999/SOURCE.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
