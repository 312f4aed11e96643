"""How far the robustness protocol moves the shares kept, on one trained run, side by side in one process.

Usage:
    python benchmarks/robustness_protocol.py --run runs/best [--faces 150] [--protocols one,every,old] [--out x.json]

Protocols (``evaluation.robustness``):
- ``one``: the default since the severity plan: a fixed stratified subset of ``--faces`` faces, no flip on damaged
  faces, each face at one severity per damage (9 passes of the subset);
- ``every``: the same subset and pass at all three severities (27 passes; the default of issue 34's first round);
- ``old``: every test face, the model's flip TTA, every severity (the protocol before issue 34).

The faces are those the run's own section damages: the test split of the source its top-level scores report (the
first trained source, or ``train.select_source``), majority faces only for crowd-voted data. Prints, per metric,
each protocol's share kept and 95% bootstrap interval, whether the other protocols' shares lie inside the first
one's interval, and the seconds each took (with the load average: a busy machine stretches every protocol alike).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from affectlab.config import load_recipe
from affectlab.data.dataset import open_dataset
from affectlab.data.split import load_split
from affectlab.evaluation.robustness import robustness_section
from affectlab.experiment import score_split
from affectlab.models.checkpoint import load_checkpoint
from affectlab.models.outputs import predict_images

#: name -> (faces: None for --faces, 0 for every face; flip; every severity)
PROTOCOLS: dict[str, tuple[int | None, bool, bool]] = {
    "one": (None, False, False),
    "every": (None, False, True),
    "old": (0, True, True),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained run folder (config.yaml, split.json, model.pt)")
    parser.add_argument("--faces", type=int, default=150)
    parser.add_argument("--protocols", default="one,every,old", help=f"comma-separated, of {', '.join(PROTOCOLS)}")
    parser.add_argument("--out", help="write every section as JSON here")
    args = parser.parse_args(argv)
    names = args.protocols.split(",")
    unknown = sorted(set(names) - set(PROTOCOLS))
    if unknown:
        parser.error(f"unknown protocol {', '.join(unknown)}; choose from {', '.join(PROTOCOLS)}")
    run = Path(args.run)
    cfg = load_recipe(run / "config.yaml")
    load_split(run / "split.json")
    model, meta = load_checkpoint(run)
    data_cfg = dataclasses.replace(cfg.data, split_file=str(run / "split.json"))
    data = open_dataset(data_cfg, meta.preprocess.input_size, splits=("test",))
    test = data.splits["test"]
    tta = meta.tta_flip
    outputs = predict_images(model, test.images, meta.preprocess, tta_flip=tta, calibration=meta.calibration)
    raw = predict_images(model, test.images, meta.preprocess, tta_flip=tta)
    document, faces, _ = score_split(cfg, data, test, outputs, "test", tta, meta.calibration, raw)
    sections: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name in names:
        subset, flip, every = PROTOCOLS[name]
        started = time.perf_counter()
        sections[name] = robustness_section(
            model, meta.preprocess, faces, document, tta, calibration=meta.calibration,
            faces=args.faces if subset is None else subset, flip=flip, every_severity=every,
        )  # fmt: skip
        seconds[name] = time.perf_counter() - started
    print(f"{run}: {len(faces)} faces scored, flip TTA {tta}, load average {os.getloadavg()[0]:.1f}")
    first = names[0]
    for metric in ("accuracy", "valence_ccc", "arousal_ccc"):
        shares = {name: sections[name].get(f"{metric}_relative") for name in names}
        if any(value is None for value in shares.values()):
            continue
        parts = []
        low, high = sections[first][f"{metric}_relative_interval"]
        for name in names:
            interval = sections[name][f"{metric}_relative_interval"]
            inside = "" if name == first else (" inside" if low <= shares[name] <= high else " OUTSIDE")
            parts.append(f"{name} {shares[name]:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]{inside}")
        print(f"{metric}: " + "; ".join(parts))
    print("seconds: " + ", ".join(f"{name} {seconds[name]:.1f}" for name in names))
    if args.out:
        Path(args.out).write_text(json.dumps({"seconds": seconds, **sections}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
