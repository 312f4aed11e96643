"""Wall time per stage and model, and peak memory, of one ``affectlab study`` run.

Usage:
    python benchmarks/study.py --data ../shared/data/affectnet-3999 --out /tmp/bench-study \
        [--weights vgg16=none,mobilenet_v2=imagenet] [--backbones vgg16,mobilenet_v2] [any other study flags]

It runs the study in this process (so peak RSS covers everything), then prints a table from ``summary.json``.
Clear ``$AFFECTLAB_CACHE/features`` first to time a cold run (the feature cache otherwise makes reruns faster).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

from affectlab.cli import main


def _arg(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def run(argv: list[str]) -> int:
    started = time.perf_counter()
    code = main(["study", "--quiet", *argv])
    wall = time.perf_counter() - started
    if code != 0:
        return code
    summary = json.loads((Path(_arg(argv, "--out")) / "summary.json").read_text())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nmachine: {os.cpu_count()} CPUs, {summary['machine']['platform']}, torch {summary['machine']['torch']}, "
          f"{summary['machine']['threads']} threads")
    for stage, seconds in summary["timing"]["stages"].items():
        print(f"stage {stage:<32} {seconds:8.1f} s")
    for r in summary["runs"]:
        print(f"model {r['name']:<32} {r['train_seconds']:8.1f} s  (of which features {r['feature_seconds']:.1f} s, "
              f"{r['epochs_run']} epochs, feature cache {'on' if r['used_feature_cache'] else 'off'})")
    print(f"total wall time {wall:.1f} s; peak memory (RSS) {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
