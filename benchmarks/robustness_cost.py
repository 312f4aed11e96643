"""What the robustness and faces-in-scenes sections add to an evaluation: the test split damaged 27 ways and
scored again; the test faces pasted into generated scenes and run through the default detector.

Usage:
    python benchmarks/robustness_cost.py [--recipe demo] [--data demo] [--tta-flip] [--sections robustness,scenes]

Builds the recipe's model (its backbone and input size, random weights: the cost does not depend on them) and
the recipe's test split, then times one clean pass over it, the damage alone, the whole robustness section and
the faces-in-scenes section. Prints one line of seconds (wall and this process's CPU) per stage and the ratio to
the clean pass.
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
from affectlab.evaluation.faces_in_scenes import faces_in_scenes_section
from affectlab.evaluation.robustness import robustness_section
from affectlab.models.affect_model import create_model
from affectlab.models.meta import ModelMeta
from affectlab.models.outputs import predict_images
from affectlab.models.weights import resolve_backbone
from affectlab.training.fit import preprocess_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="demo")
    parser.add_argument("--data", default="demo")
    parser.add_argument("--task", default="multitask")
    parser.add_argument("--tta-flip", action="store_true")
    parser.add_argument("--sections", default="robustness,scenes", help="which sections to time, comma-separated")
    args = parser.parse_args()
    cfg = resolve_config(args.recipe, {"data.path": args.data, "model.task": args.task, "model.weights": "none"})
    backbone = resolve_backbone(cfg.model.backbone, "none")
    model = create_model(cfg.model, backbone).eval()
    preprocess = preprocess_for(backbone, cfg.model.input_size)
    split = open_dataset(cfg.data, cfg.model.input_size, splits=("test",)).splits["test"]

    sections = args.sections.split(",")
    timings: list[str] = []

    def timed(name: str, call):  # type: ignore[no-untyped-def]
        wall, cpu = time.perf_counter(), time.process_time()
        result = call()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        timings.append(f"{name} {wall:.2f} s ({cpu:.2f} s CPU" + (f", {wall / clean:.0f}x clean)" if timings else ")"))
        return result, wall

    outputs, clean = timed(
        "clean pass", lambda: predict_images(model, split.images, preprocess, tta_flip=args.tta_flip)
    )
    document = score(outputs, split, cfg.model, "test", args.tta_flip)
    if "robustness" in sections:
        timed("damage alone", lambda: [damaged(split.images, d, s) for d in DAMAGES for s in (1, 2, 3)])
        timed("robustness section", lambda: robustness_section(model, preprocess, split, document, args.tta_flip))
    if "scenes" in sections:
        meta = ModelMeta(task=cfg.model.task, preprocess=preprocess, model=cfg.model)
        section, _ = timed(
            "faces-in-scenes section",
            lambda: faces_in_scenes_section(model, meta, split, document, args.tta_flip),
        )
        timings[-1] += (
            f" [{section['scenes']} scenes, {section['detector']}, {section['found']}/{section['faces']} found]"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{cfg.model.backbone} {cfg.model.input_size}px {cfg.model.task}, {len(split)} test faces, "
        f"tta_flip={args.tta_flip}, torch threads {torch.get_num_threads()}, load average {load:.1f}: "
        + "; ".join(timings),
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
