"""What the robustness section adds to an evaluation: the test split damaged 27 ways and scored again.

Usage:
    python benchmarks/robustness_cost.py [--recipe demo] [--data demo] [--tta-flip]

Builds the recipe's model (its backbone and input size, random weights: the cost does not depend on them) and
the recipe's test split, then times one clean pass over it, the damage alone, and the whole robustness section.
Prints one line of seconds per stage and the ratio to the clean pass.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from affectlab.config import resolve_config
from affectlab.data.damage import DAMAGES, damaged
from affectlab.data.dataset import open_dataset
from affectlab.evaluation.evaluate import score
from affectlab.evaluation.robustness import robustness_section
from affectlab.models.affect_model import create_model
from affectlab.models.outputs import predict_images
from affectlab.models.weights import resolve_backbone
from affectlab.training.fit import preprocess_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="demo")
    parser.add_argument("--data", default="demo")
    parser.add_argument("--task", default="multitask")
    parser.add_argument("--tta-flip", action="store_true")
    args = parser.parse_args()
    cfg = resolve_config(args.recipe, {"data.path": args.data, "model.task": args.task, "model.weights": "none"})
    backbone = resolve_backbone(cfg.model.backbone, "none")
    model = create_model(cfg.model, backbone).eval()
    preprocess = preprocess_for(backbone, cfg.model.input_size)
    split = open_dataset(cfg.data, cfg.model.input_size, splits=("test",)).splits["test"]

    started = time.perf_counter()
    outputs = predict_images(model, split.images, preprocess, tta_flip=args.tta_flip)
    clean = time.perf_counter() - started
    document = score(outputs, split, cfg.model, "test", args.tta_flip)
    started = time.perf_counter()
    for damage in DAMAGES:
        for severity in (1, 2, 3):
            damaged(split.images, damage, severity)
    damage_only = time.perf_counter() - started
    started = time.perf_counter()
    robustness_section(model, preprocess, split, document, args.tta_flip)
    section = time.perf_counter() - started
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{cfg.model.backbone} {cfg.model.input_size}px {cfg.model.task}, {len(split)} test faces, "
        f"tta_flip={args.tta_flip}, torch threads {torch.get_num_threads()}, load average {load:.1f}: "
        f"clean pass {clean:.2f} s, damage alone {damage_only:.2f} s, robustness section {section:.2f} s "
        f"({section / clean:.0f}x the clean pass)",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
