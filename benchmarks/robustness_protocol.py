"""How far issue 34's robustness protocol moves the shares kept: the old one (every test face, the model's flip TTA)
against the new default (a fixed stratified subset, no flip on damaged faces), on one trained run, side by side in
one process.

Usage:
    python benchmarks/robustness_protocol.py --run runs/reference-mnv2 [--faces 150] [--out shift.json]

Prints, per metric, the share kept under each protocol, the new one's 95% bootstrap interval, whether the old share
lies inside it, and the seconds each protocol took (with the load average: a busy machine stretches both).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from affectlab.config import load_recipe
from affectlab.data.dataset import open_dataset
from affectlab.data.split import load_split
from affectlab.evaluation.evaluate import score
from affectlab.evaluation.robustness import robustness_section
from affectlab.models.checkpoint import load_checkpoint
from affectlab.models.outputs import predict_images


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained run folder (config.yaml, split.json, model.pt)")
    parser.add_argument("--faces", type=int, default=150)
    parser.add_argument("--out", help="write both sections as JSON here")
    args = parser.parse_args(argv)
    run = Path(args.run)
    cfg = load_recipe(run / "config.yaml")
    load_split(run / "split.json")
    model, meta = load_checkpoint(run)
    data_cfg = dataclasses.replace(cfg.data, split_file=str(run / "split.json"))
    test = open_dataset(data_cfg, meta.preprocess.input_size, splits=("test",)).splits["test"]
    tta = meta.tta_flip
    outputs = predict_images(model, test.images, meta.preprocess, tta_flip=tta, calibration=meta.calibration)
    raw = predict_images(model, test.images, meta.preprocess, tta_flip=tta)
    document = score(outputs, test, cfg.model, "test", tta, meta.calibration, raw)
    sections, seconds = {}, {}
    for name, faces, flip in (("new", args.faces, False), ("old", 0, True)):
        started = time.perf_counter()
        sections[name] = robustness_section(
            model, meta.preprocess, test, document, tta, calibration=meta.calibration, faces=faces, flip=flip
        )
        seconds[name] = time.perf_counter() - started
    print(f"{run}: {len(test)} test faces, flip TTA {tta}, load average {os.getloadavg()[0]:.1f}")
    for metric in ("accuracy", "valence_ccc", "arousal_ccc"):
        new, old = sections["new"].get(f"{metric}_relative"), sections["old"].get(f"{metric}_relative")
        if new is None or old is None:
            continue
        low, high = sections["new"][f"{metric}_relative_interval"]
        inside = "inside" if low <= old <= high else "OUTSIDE"
        print(
            f"{metric}: old {old:.3f} (every face, flip {tta}), new {new:.3f} [{low:.3f}, {high:.3f}] "
            f"({args.faces} faces, no flip): moved {new - old:+.3f}, old {inside} the new interval"
        )
    print(f"seconds: old {seconds['old']:.1f}, new {seconds['new']:.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"seconds": seconds, **sections}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
