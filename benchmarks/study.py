"""Wall time per stage, model and section, and peak memory, of one study.

Usage:
    python benchmarks/study.py --data ../shared/data/affectnet-3999 --out /tmp/bench-study \
        [--weights vgg16=none,mobilenet_v2=imagenet] [--recipe reference] [--backbones vgg16,mobilenet_v2] \
        [--seeds 0] [--set SECTION.KEY=VALUE ...] [--overwrite]
    python benchmarks/study.py --data demo --recipe demo --out /tmp/bench-demo      # the demo study
    python benchmarks/study.py --table /tmp/bench-study                               # a finished study's table

It runs ``affectlab.study`` in this process (so peak RSS covers everything), then prints a table from its summary:
the seconds of each section of each run (``metrics.json``'s ``cost``: training, crop fit, calibration, clean
scoring, robustness, faces in scenes, figures, size and speed), the load average before and after, and the peak.
Point ``$AFFECTLAB_CACHE`` at an empty folder to time a cold run (the feature cache otherwise makes reruns faster).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import affectlab
from affectlab.reports.study_report import cost_rows, markdown_table
from affectlab.training.fit import quiet_lightning


def print_costs(summary: dict[str, Any]) -> None:
    """The per-section seconds of every run, and their sum per section over the study."""
    header, rows = cost_rows(summary["runs"])
    if rows:
        totals = [f"{sum(float(r[i]) for r in rows if r[i] != '-'):.1f}" for i in range(1, len(header))]
        print(markdown_table(header, [*rows, ["all runs", *totals]]))


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--out")
    parser.add_argument("--table", help="print the cost table of a finished study folder and stop")
    parser.add_argument("--recipe", help="a packaged recipe's name or a recipe file (default: the reference study)")
    parser.add_argument("--weights", help="per backbone, e.g. vgg16=none,mobilenet_v2=imagenet")
    parser.add_argument("--backbones", help="comma-separated backbones")
    parser.add_argument("--seeds", help="comma-separated seeds")
    parser.add_argument("--set", action="append", dest="sets", metavar="SECTION.KEY=VALUE")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.table:
        print_costs(json.loads((Path(args.table) / "summary.json").read_text()))
        return 0
    if not args.data or not args.out:
        parser.error("--data and --out are needed to run a study")
    quiet_lightning()
    load_before = os.getloadavg()
    overrides = {
        "study.backbone_weights": dict(item.split("=", 1) for item in args.weights.split(","))
        if args.weights
        else None,
        "study.backbones": args.backbones.split(",") if args.backbones else None,
        "study.seeds": [int(s) for s in args.seeds.split(",")] if args.seeds else None,
    }
    overrides = {name: value for name, value in overrides.items() if value is not None}  # the options given
    started = time.perf_counter()
    study = affectlab.study(
        args.recipe, data=args.data, out=args.out, overwrite=args.overwrite, progress=False, sets=args.sets, **overrides
    )
    wall = time.perf_counter() - started
    summary = study.to_dict()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nmachine: {os.cpu_count()} CPUs, {summary['machine']['platform']}, torch {summary['machine']['torch']}, "
        f"{summary['machine']['threads']} threads"
    )
    for stage, seconds in summary["timing"]["stages"].items():
        print(f"stage {stage:<32} {seconds:8.1f} s")
    for r in study.runs:
        print(
            f"model {r.name:<32} {r.train_seconds:8.1f} s  (of which features {r.feature_seconds:.1f} s, "
            f"{r.epochs_run} epochs, feature cache {'on' if r.used_feature_cache else 'off'})"
        )
    print_costs(summary)
    load_after = os.getloadavg()
    print(
        f"total wall time {wall:.1f} s; peak memory (RSS) {peak_mb:.0f} MB; load average (1/5/15 min) before "
        f"{'/'.join(f'{x:.1f}' for x in load_before)}, after {'/'.join(f'{x:.1f}' for x in load_after)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
