"""py-feat's cross-tool protocol on a run's AffectNet test split: whole image -> default detector -> largest face.

py-feat compares installed tools end to end (``docs/benchmarks/cross_tool_methodology.md`` in py-feat): each tool
gets AffectNet's validation images, runs its own face detector, and the largest face is scored on 7 classes.
Images labelled Contempt are left out, a Contempt prediction counts as wrong, and an image where no face is found
counts as wrong. Our 3,999 images are AffectNet's validation set, so the protocol runs on the run's own test split
(``split.json``) as it is: the model never saw these images.

The model runs as ``affectlab predict`` runs it: ``affectlab.load(RUN)`` with the default detector, the model's
crop margin, its flip TTA and calibration. Valence/arousal CCC is over the same images, an image without a face
counting as V = A = 0 (the centre of the circumplex); the CCC on the images with a face is printed too. A second
row gives the same images as dataset crops (``--detector none``): what the detector and the crop cost.

    python benchmarks/cross_tool.py --model RUN --data ../shared/data/affectnet-3999 [--out cross_tool.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "affectnet-3999"
#: The seven classes of the protocol (AffectNet's eight without Contempt), by index in ``affectlab.labels``.
SEVEN = list(range(7))
#: Published rows (py-feat ``docs/benchmarks/cross_tool_methodology.md``): accuracy, macro-F1, CCC V/A.
PUBLISHED = [
    ("py-feat v2 (published)", 0.492, 0.479, 0.535, 0.482),
    ("OpenFace 3.0 (published)", 0.493, 0.520, None, None),
    ("LibreFace (published)", 0.455, 0.403, None, None),
]


def split_samples(run: Path, data: Path) -> list[Any]:
    """The run's test samples (paths and labels) in ``data``, by the run's own ``split.json``."""
    from affectlab.config import load_recipe
    from affectlab.data.source import read_source
    from affectlab.data.split import load_split

    cfg = load_recipe(run / "config.yaml")
    data_cfg = replace(cfg.data, path=str(data), split_file=str(run / "split.json"), sources=[], train_on=None)
    saved = load_split(run / "split.json")
    if "sources" not in saved:
        return read_source(data_cfg, splits=("test",)).by_split["test"]
    # a run on several sources: the split of the source read from ``data`` (by folder name, else the first)
    parts = saved["sources"]
    name = next((n for n, part in parts.items() if Path(part.get("path", "")).name == data.name), next(iter(parts)))
    return read_source(data_cfg, splits=("test",), assignment=parts[name]).by_split["test"]


def protocol_scores(
    predicted: np.ndarray, va_predicted: np.ndarray, found: np.ndarray, expression: np.ndarray, va: np.ndarray
) -> dict[str, Any]:
    """The protocol's scores: ``predicted`` is the class index (-1: no face), ``found`` whether a face was."""
    from affectlab.evaluation.metrics import ccc

    has_va = not np.isnan(va_predicted).all()
    return {
        "n": len(expression),
        "faces_found": float(found.mean()),
        "contempt_predictions": int((predicted == 7).sum()),
        "accuracy": float(np.mean(predicted == expression)),
        "f1_macro": float(f1_score(expression, predicted, labels=SEVEN, average="macro", zero_division=0.0)),
        "accuracy_found": float(np.mean(predicted[found] == expression[found])) if found.any() else None,
        "ccc_valence": ccc(va[:, 0], np.nan_to_num(va_predicted[:, 0])) if has_va else None,
        "ccc_arousal": ccc(va[:, 1], np.nan_to_num(va_predicted[:, 1])) if has_va else None,
        "ccc_valence_found": ccc(va[found, 0], va_predicted[found, 0]) if has_va and found.sum() > 1 else None,
        "ccc_arousal_found": ccc(va[found, 1], va_predicted[found, 1]) if has_va and found.sum() > 1 else None,
    }


def run_protocol(predictor: Any, paths: list[Path], chunk: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class index (-1: no face), V/A (0 where no face; NaN for a model without V/A) and found, per image."""
    predicted = np.full(len(paths), -1)
    va = np.zeros((len(paths), 2))
    found = np.zeros(len(paths), dtype=bool)
    for start in range(0, len(paths), chunk):
        for i, result in enumerate(predictor.predict([str(p) for p in paths[start : start + chunk]]), start):
            if result.error:
                raise SystemExit(f"{paths[i]}: {result.error}")
            if not len(result):
                continue
            face = max(result, key=lambda f: f.box[2] * f.box[3])  # the largest face
            found[i] = True
            if face.probs is not None:
                predicted[i] = int(np.argmax(face.probs))
            va[i] = (np.nan, np.nan) if face.valence is None else (face.valence, face.arousal)
    return predicted, va, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a run folder (with split.json)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the AffectNet-layout folder it trained on")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()

    import affectlab
    from affectlab.reports.study_report import markdown_table

    samples = [s for s in split_samples(args.model, args.data) if s.expression is not None and s.expression < 7]
    expression = np.array([s.expression for s in samples])
    va = np.array([[s.valence, s.arousal] for s in samples], dtype=np.float64)
    paths = [s.path for s in samples]
    print(f"{len(samples)} test images of 7 classes (Contempt left out); load average {os.getloadavg()[0]:.2f}")

    rows: list[dict[str, Any]] = []
    for name, detector in (("default detector, largest face", "auto"), ("dataset crops (--detector none)", "none")):
        predictor = affectlab.load(args.model, detector=detector)
        started = time.perf_counter()
        predicted, va_predicted, found = run_protocol(predictor, paths)
        seconds = time.perf_counter() - started
        label = f"affectlab {args.model.name}: {name}"
        if detector != "none":
            label += f" ({predictor.detector.name}, margin {predictor.margin:g})"
        rows.append({"row": label, "seconds": round(seconds, 1),
                     **protocol_scores(predicted, va_predicted, found, expression, va)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")

    def f(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    header = ["", "faces found", "accuracy", "macro-F1", "CCC V / A", "CCC V / A (faces found)", "Contempt predicted"]
    table = [
        [
            r["row"],
            f(r["faces_found"]),
            f(r["accuracy"]),
            f(r["f1_macro"]),
            f"{f(r['ccc_valence'])} / {f(r['ccc_arousal'])}",
            f"{f(r['ccc_valence_found'])} / {f(r['ccc_arousal_found'])}",
            str(r["contempt_predictions"]),
        ]
        for r in rows
    ]
    table += [[name, "-", f(acc), f(f1), f"{f(v)} / {f(a)}", "-", "-"] for name, acc, f1, v, a in PUBLISHED]
    print()
    print(markdown_table(header, table))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
