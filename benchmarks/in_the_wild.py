"""What users lose in the wild: a trained run scored on its test faces embedded in scenes, through the pipeline.

Each test face of the run's split is pasted into its own 640x480 scene (``affectlab.evaluation.scenes``: generated background,
the face at 60-250 px, rotated up to +-20 degrees, sometimes blurred or relit, never occluded, since a covered
mouth changes the expression), and the scene goes through ``affectlab.load(run, detector=...)`` as a user's
photo would: detect, crop (plain box or aligned), resize, the model (with the run's flip TTA). The face whose
box overlaps the true box best (IoU >= .5) is scored; a face the detector misses counts as a miss.

Rows: the same model on the dataset's own crops (``--detector none``, what ``evaluate`` reports), then per
detector, alignment and margin: found (share of faces detected), accuracy and valence/arousal CCC on the faces
found, and accuracy with misses counted as wrong (what a user gets per face shown).

    python benchmarks/in_the_wild.py --run RUN_DIR [--data ../shared/data/affectnet-3999] [--seed 0]
        [--variants yuface,yuface@0,yuface+align,haar,haar@0] [--faces N] [--out wild.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from affectlab.evaluation import scenes as composites

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "affectnet-3999"


def test_split(run: Path, data: Path):  # type: ignore[no-untyped-def]
    """The run's test split (labels) and the paths of its original crops."""
    from dataclasses import replace

    from affectlab.config import load_recipe
    from affectlab.data.dataset import open_dataset

    cfg = load_recipe(run / "config.yaml")
    data_cfg = replace(cfg.data, path=str(data), split_file=str(run / "split.json"))
    part = open_dataset(data_cfg, cfg.model.input_size, splits=("test",)).splits["test"]
    paths = [data / "images" / f"{i}.jpg" for i in part.ids]
    return cfg, part, paths


def subset(part, keep: np.ndarray):  # type: ignore[no-untyped-def]
    from affectlab.data.prepared import SplitData

    ids = [i for i, k in zip(part.ids, keep) if k]
    return SplitData(ids, part.images[keep], part.expression[keep], part.va[keep])


def outputs_of(faces: list) -> dict[str, np.ndarray]:  # type: ignore[type-arg]
    out: dict[str, np.ndarray] = {}
    if faces and faces[0].probs is not None:
        out["probs"] = np.array([f.probs for f in faces])
    if faces and faces[0].valence is not None:
        out["va"] = np.array([[f.valence, f.arousal] for f in faces])
    return out


def summary(metrics: dict) -> dict[str, float]:  # type: ignore[type-arg]
    row = {"n": metrics["n"]}
    if "classification" in metrics:
        row["accuracy"] = metrics["classification"]["accuracy"]
        row["f1_macro"] = metrics["classification"]["f1_macro"]
    for axis in ("valence", "arousal"):
        if axis in metrics:
            row[f"ccc_{axis[0]}"] = metrics[axis]["ccc"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants",
        default="yuface,yuface@0,yuface+align,haar,haar@0",
        help="DETECTOR[+align][@MARGIN], comma-separated (margin default: the model's)",
    )
    parser.add_argument("--faces", type=int, help="only the first N test faces (default: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import affectlab
    from affectlab.evaluation.evaluate import score
    from affectlab.reports.study_report import markdown_table
    from affectlab.runtime.faces import iou

    cfg, part, paths = test_split(args.run, args.data)
    if args.faces:
        part, paths = subset(part, np.arange(len(paths)) < args.faces), paths[: args.faces]
    crops = composites.load_crops(paths)
    spec = composites.SceneSpec(640, 480, min_face=60, max_face=250, faces=(1, 1), max_angle=20, p_occlude=0.0)
    rng = np.random.default_rng(args.seed)
    scenes = []
    for i in range(len(crops)):  # scene i holds test face i
        scene = composites.make_scene(rng, [crops[i]], spec)
        scenes.append(scene)
    print(f"{len(scenes)} test faces in scenes; load average {os.getloadavg()[0]:.2f}", flush=True)

    rows = []
    base = affectlab.load(args.run, detector="none")
    tta = base.info.tta_flip
    own = [r[0] for r in base.predict(crops)]  # type: ignore[union-attr, index]
    rows.append(
        {
            "pipeline": "dataset crops (--detector none)",
            "found": 1.0,
            **summary(score(outputs_of(own), part, cfg.model, "test", tta)),
        }
    )
    print(json.dumps(rows[-1]), flush=True)
    for variant in args.variants.split(","):
        name, _, margin_text = variant.partition("@")
        detector, _, option = name.partition("+")
        margin = float(margin_text) if margin_text else None
        predictor = affectlab.load(args.run, detector=detector, margin=margin, align=option == "align")
        faces, keep = [], np.zeros(len(scenes), bool)
        for i, scene in enumerate(scenes):
            result = predictor.predict(scene.image)
            best = max(result, key=lambda f: iou(f.box, scene.boxes[0]), default=None)  # type: ignore[arg-type]
            if best is not None and iou(best.box, scene.boxes[0]) >= 0.5:
                keep[i] = True
                faces.append(best)
        found = summary(score(outputs_of(faces), subset(part, keep), cfg.model, "test", tta))
        correct = sum(int(np.argmax(f.probs)) == e for f, e in zip(faces, part.expression[keep]))
        rows.append(
            {
                "pipeline": f"{name}, margin {predictor.margin:g}",
                "found": float(keep.mean()),
                **found,
                "accuracy_all": correct / len(scenes),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    header = [
        "pipeline",
        "faces found",
        "accuracy (found)",
        "F1 macro (found)",
        "CCC V/A (found)",
        "accuracy, misses wrong",
    ]
    table = [
        [
            r["pipeline"],
            f"{r['found']:.3f}",
            f"{r['accuracy']:.3f}",
            f"{r['f1_macro']:.3f}",
            f"{r['ccc_v']:.3f}/{r['ccc_a']:.3f}",
            f"{r.get('accuracy_all', r['accuracy']):.3f}",
        ]
        for r in rows
    ]
    print()
    print(markdown_table(header, table))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
