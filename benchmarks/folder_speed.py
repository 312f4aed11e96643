"""Seconds and photos/s of ``predict`` on folders of photos with 5 faces each: the path before issue 26 against
the new default, side by side in one run.

Photos are generated at run time: face crops (AffectNet images from ``--faces``, else synthetic demo faces) pasted
five to a scene on a smooth, lightly textured background, written as JPEG (quality 90) into a temporary folder:
``--n`` photos of about 1 MP (1224 x 816) and as many of about 10 MP (3872 x 2592), the same compositions.

Each folder is run through the same pipeline as ``affectlab predict`` (``run_predictions``, records written as
JSON lines to memory) in three ways:

- ``today: run folder``: the run folder on PyTorch, one thread of work, every photo decoded in full (the path
  before issue 26: ``--backend torch --workers 1``, ``decode_at_scale=False``);
- ``today: model.onnx``: the exported ONNX file given directly, the same sequential full-decode path;
- ``new default``: the run folder with the defaults (ONNX Runtime from its export, photos decoded at the scale
  each step needs, ``--workers`` = the usable CPUs).

It also reports how far the new default's records are from the ONNX file's on the old path (the same model: the
differences are the reduced decodes), matched face by face. Timings depend on what else runs on the machine: the
load average is printed with them.

    python benchmarks/folder_speed.py --model runs/best [--n 150] [--faces ../shared/data/affectnet-3999/images]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

SIZES = {"1 MP": (1224, 816), "10 MP": (3872, 2592)}
DEFAULT_FACES = Path("../shared/data/affectnet-3999/images")


def face_images(folder: Path | None, count: int, scratch: Path) -> list[np.ndarray]:
    """``count`` BGR face crops: AffectNet images when the folder exists, else synthetic demo faces."""
    if folder is not None and folder.is_dir():
        paths = sorted(folder.glob("*.jpg"))[:count]
        return [cv2.imread(str(p)) for p in paths]
    from affectlab.data.demo import generate_demo_dataset

    demo = generate_demo_dataset(scratch / "demo", n_per_class=-(-count // 8), image_size=224, seed=0)
    return [cv2.imread(str(p)) for p in sorted((demo / "images").glob("*.png"))[:count]]


def make_photos(faces: list[np.ndarray], n: int, size: tuple[int, int], out: Path, seed: int = 0) -> Path:
    """``n`` JPEG photos of ``size`` with 5 faces each (about a fifth of the photo's height, staggered)."""
    out.mkdir(parents=True)
    width, height = size
    rng = np.random.default_rng(seed)
    side = height // 5
    for i in range(n):
        coarse = rng.integers(50, 210, (9, 13, 3)).astype(np.uint8)
        canvas = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        canvas = np.clip(canvas + rng.normal(0, 4, canvas.shape), 0, 255).astype(np.uint8)
        for k in range(5):
            face = cv2.resize(faces[(5 * i + k) % len(faces)], (side, side), interpolation=cv2.INTER_AREA)
            x = int((k + 0.5) * width / 5 - side / 2)
            y = int(height * (0.25 if k % 2 else 0.55))
            canvas[y : y + side, x : x + side] = face
        cv2.imwrite(str(out / f"{i:04d}.jpg"), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out


def timed_run(predictor, folder: Path) -> tuple[float, list[dict]]:  # type: ignore[no-untyped-def]
    from affectlab.runtime.pipeline import run_predictions
    from affectlab.runtime.records import RecordWriter
    from affectlab.runtime.settings import PredictConfig
    from affectlab.runtime.sources import expand_inputs

    sources = expand_inputs([str(folder)])
    stream = io.StringIO()
    writer = RecordWriter(stream, "jsonl")
    started = time.perf_counter()
    run_predictions(predictor, sources, lambda result: writer.write(result.records()), PredictConfig())
    seconds = time.perf_counter() - started
    return seconds, [json.loads(line) for line in stream.getvalue().splitlines()]


def record_difference(old: list[dict], new: list[dict]) -> dict[str, float]:
    """Faces matched by source and box overlap: mean and largest |probability| difference, boxes that moved."""
    from affectlab.runtime.faces import iou

    by_source: dict[str, list[dict]] = {}
    for record in old:
        by_source.setdefault(record["source"], []).append(record)
    diffs, matched, unmatched = [], 0, 0
    for record in new:
        if record.get("box") is None:
            continue
        candidates = [r for r in by_source.get(record["source"], []) if r.get("box") is not None]
        best = max(candidates, key=lambda r: iou(tuple(r["box"]), tuple(record["box"])), default=None)
        if best is None or iou(tuple(best["box"]), tuple(record["box"])) < 0.5:
            unmatched += 1
            continue
        matched += 1
        a, b = np.asarray(list(best["probs"].values())), np.asarray(list(record["probs"].values()))
        diffs.append(np.abs(a - b))
    stacked = np.concatenate(diffs) if diffs else np.zeros(1)
    return {
        "faces_matched": matched,
        "faces_unmatched": unmatched,
        "mean_abs_prob_diff": float(stacked.mean()),
        "max_abs_prob_diff": float(stacked.max()),
    }


def crop_difference(predictor, folder: Path, limit: int = 20) -> float:  # type: ignore[no-untyped-def]
    """Mean |pixel| difference (0-255) of the model inputs: reduced decodes against the full decode, same boxes."""
    from affectlab.runtime.decode import ScaledPhoto, photo_faces
    from affectlab.runtime.faces import crop_faces

    size = predictor.info.preprocess.input_size
    values = []
    for path in sorted(folder.glob("*.jpg"))[:limit]:
        photo = ScaledPhoto.read(path)
        found, crops = photo_faces(photo, predictor.detector, size, predictor.margin)
        if len(found):
            full = crop_faces(photo.decode(1), found, size, predictor.margin)
            values.append(np.abs(crops.astype(np.float64) - full).mean())
    return float(np.mean(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a trained run folder (with model.pt)")
    parser.add_argument("--n", type=int, default=150, help="photos per size (default 150)")
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES, help="AffectNet images folder")
    parser.add_argument("--workers", type=int, help="the new default's --workers (default: the usable CPUs)")
    args = parser.parse_args()

    import affectlab
    from affectlab.export.runtime_model import model_for_backend
    from affectlab.runtime.predictor import load

    run = Path(args.model)
    started = time.perf_counter()
    onnx_path = model_for_backend(run, "onnx")  # exported once if the run has none: timed apart
    print(f"ONNX export of {run}: {onnx_path} ({time.perf_counter() - started:.1f} s, 0 if it existed)")
    modes = {
        "today: run folder (torch, 1 worker, full decode)": lambda: load(run, workers=1, decode_at_scale=False),
        "today: model.onnx (1 worker, full decode)": lambda: load(onnx_path, workers=1, decode_at_scale=False),
        "new default (run folder)": lambda: affectlab.load(run, workers=args.workers),
    }
    with tempfile.TemporaryDirectory(prefix="affectlab-folder-speed-") as tmp:
        scratch = Path(tmp)
        faces = face_images(args.faces, 5 * 40, scratch)
        print(f"faces: {len(faces)} from {args.faces if args.faces.is_dir() else 'synthetic demo faces'}")
        folders = {
            name: make_photos(faces, args.n, size, scratch / name.replace(" ", "")) for name, size in SIZES.items()
        }
        mb = {n: sum(p.stat().st_size for p in f.iterdir()) / len(list(f.iterdir())) / 1e6 for n, f in folders.items()}
        print(f"photos: {args.n} per size; mean JPEG size " + ", ".join(f"{n}: {v:.2f} MB" for n, v in mb.items()))
        print(f"load before: {os.getloadavg()}")
        table: dict[str, dict[str, float]] = {}
        records: dict[tuple[str, str], list[dict]] = {}
        for mode, make in modes.items():
            predictor = make()
            print(f"{mode}: runtime {predictor.info.runtime}, workers {predictor.workers}", flush=True)
            for size, folder in folders.items():
                seconds, got = timed_run(predictor, folder)
                table.setdefault(mode, {})[size] = seconds
                records[(mode, size)] = got
                print(f"  {size}: {seconds:.1f} s, {args.n / seconds:.1f} photos/s", flush=True)
        print(f"load after: {os.getloadavg()}")
        print()
        print(
            "| model given to predict | " + " | ".join(f"{args.n} photos of {s}" for s in SIZES) + " | 10 MP / 1 MP |"
        )
        print("|---|" + "---|" * (len(SIZES) + 1))
        for mode, row in table.items():
            cells = " | ".join(f"{row[s]:.1f} s ({args.n / row[s]:.1f} photos/s)" for s in SIZES)
            print(f"| {mode} | {cells} | {row['10 MP'] / row['1 MP']:.2f} |")
        today, old, new = list(modes)
        total = {mode: sum(row.values()) for mode, row in table.items()}
        print()
        print(f"whole folder run, today's run-folder path / new default: {total[today] / total[new]:.2f}x")
        print(f"today's model.onnx / new default: {total[old] / total[new]:.2f}x")
        for size, folder in folders.items():
            diff = record_difference(records[(old, size)], records[(new, size)])
            pixels = crop_difference(affectlab.load(onnx_path, workers=1), folder)
            print(
                f"{size}: records of the new default against model.onnx on the old path: {diff}; "
                f"model input mean |pixel| difference (same boxes, 20 photos): {pixels:.2f}"
            )


if __name__ == "__main__":
    main()
