"""Wall time per stage and model, and peak memory, of one study.

Usage:
    python benchmarks/study.py --data ../shared/data/affectnet-3999 --out /tmp/bench-study \
        [--weights vgg16=none,mobilenet_v2=imagenet] [--recipe reference] [--backbones vgg16,mobilenet_v2] \
        [--seeds 0] [--set SECTION.KEY=VALUE ...] [--overwrite]

It runs ``affectlab.study`` in this process (so peak RSS covers everything), then prints a table from its summary.
Clear ``$AFFECTLAB_CACHE/features`` first to time a cold run (the feature cache otherwise makes reruns faster).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import affectlab
from affectlab.training.fit import quiet_lightning


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--recipe", help="a packaged recipe's name or a recipe file (default: the reference study)")
    parser.add_argument("--weights", help="per backbone, e.g. vgg16=none,mobilenet_v2=imagenet")
    parser.add_argument("--backbones", help="comma-separated backbones")
    parser.add_argument("--seeds", help="comma-separated seeds")
    parser.add_argument("--set", action="append", dest="sets", metavar="SECTION.KEY=VALUE")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    quiet_lightning()
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
    print(f"total wall time {wall:.1f} s; peak memory (RSS) {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
