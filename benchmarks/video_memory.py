"""Peak memory of `affectlab predict` on 720p videos of growing length: it must stay flat.

The script writes synthetic 1280x720 videos (a moving face on a noisy background, OpenCV ``VideoWriter``, mp4v)
of 1 and 4 minutes into a temporary folder, then runs ``affectlab predict MODEL VIDEO --out results.jsonl
--save-annotated DIR`` on each in a fresh process and reads that process's peak RSS with
``resource.getrusage(RUSAGE_CHILDREN)`` from a parent made just for that run (so each number covers exactly one
predict run). Every frame is processed (the default detector, model, JSONL record, annotated output video).
The check passes when the peaks differ by less than ``--limit-mb`` (50 MB).

The model is MobileNetV2 at 128 px with random weights (memory does not depend on the weights values),
exported to ONNX; ``--formats onnx,pt`` also measures the PyTorch checkpoint.

    python benchmarks/video_memory.py [--minutes 1,4] [--fps 10] [--formats onnx]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

_MEASURE = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: kilobytes
print(json.dumps({"code": done.returncode, "peak_kb": peak_kb, "stderr": done.stderr.strip()[-500:]}))
"""


def write_video(path: Path, seconds: int, fps: float, face: np.ndarray) -> int:
    """A face gliding over a noisy 720p background; returns the number of frames written."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1280, 720))
    if not writer.isOpened():
        raise SystemExit(f"{path}: OpenCV cannot write mp4v video here")
    rng = np.random.default_rng(0)
    background = cv2.resize(rng.integers(40, 200, (9, 16, 3)).astype(np.uint8), (1280, 720), cv2.INTER_CUBIC)
    noise = [rng.integers(0, 24, (720, 1280, 3), dtype=np.uint8) for _ in range(8)]
    n = int(seconds * fps)
    for i in range(n):
        frame = cv2.add(background, noise[i % len(noise)])
        x = int(100 + 700 * (0.5 + 0.5 * np.sin(i / 40)))
        frame[200 : 200 + face.shape[0], x : x + face.shape[1]] = face
        writer.write(frame)
    writer.release()
    return n


def build_models(tmp: Path, formats: list[str]) -> dict[str, Path]:
    from affectlab.config import ModelConfig
    from affectlab.data.transforms import Preprocess
    from affectlab.export.onnx import export_onnx
    from affectlab.models.affect_model import create_model
    from affectlab.models.checkpoint import save_checkpoint

    config = ModelConfig(backbone="mobilenet_v2", weights="none", task="multitask", input_size=128)
    run = save_checkpoint(tmp / "run" / "model.pt", create_model(config).eval(), config, Preprocess(128)).parent
    models = {"pt": run}
    if "onnx" in formats:
        models["onnx"] = export_onnx(run, tmp / "model.onnx")
    return {k: v for k, v in models.items() if k in formats}


def demo_face(tmp: Path) -> np.ndarray:
    from affectlab.data.demo import generate_demo_dataset

    root = generate_demo_dataset(tmp / "face", n_per_class=1, image_size=256, seed=0)
    return cv2.imread(str(root / "images" / "0.png"))


def measure(model: Path, video: Path, tmp: Path) -> tuple[float, float, str]:
    """(peak RSS in MB, wall seconds, last stderr line) of one predict run in a fresh process tree."""
    out = tmp / f"{video.stem}.jsonl"
    command = [
        sys.executable,
        "-m",
        "affectlab.cli",
        "predict",
        str(model),
        str(video),
        "--out",
        str(out),
        "--save-annotated",
        str(tmp / f"annotated-{video.stem}"),
        "--quiet",
    ]
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    child = json.loads(result.stdout.strip().splitlines()[-1])
    if child["code"] != 0:
        raise SystemExit(f"predict failed ({child['code']}) on {video.name}: {child['stderr']}")
    records = sum(1 for _ in out.open())
    return child["peak_kb"] / 1024, seconds, f"{records} records"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1,4", help="video lengths in minutes")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second of the generated videos")
    parser.add_argument("--formats", default="onnx", help="model formats to measure: onnx, pt or both")
    parser.add_argument("--limit-mb", type=float, default=50.0)
    parser.add_argument("--out", type=Path, help="write the numbers as JSON")
    args = parser.parse_args()
    minutes = [float(m) for m in args.minutes.split(",")]
    print(f"load {os.getloadavg()}; 1280x720 at {args.fps:g} fps; lengths {minutes} min")
    rows = []
    with tempfile.TemporaryDirectory(prefix="affectlab-video-memory-") as name:
        tmp = Path(name)
        models = build_models(tmp, args.formats.split(","))
        face = demo_face(tmp)
        videos = []
        for m in minutes:
            path = tmp / f"video-{m:g}min.mp4"
            frames = write_video(path, int(m * 60), args.fps, face)
            videos.append((m, path, frames))
            print(f"wrote {path.name}: {frames} frames, {path.stat().st_size / 1e6:.1f} MB")
        for fmt, model in models.items():
            for m, path, frames in videos:
                peak, seconds, note = measure(model, path, tmp)
                rows.append(
                    {
                        "format": fmt,
                        "minutes": m,
                        "frames": frames,
                        "peak_rss_mb": round(peak, 1),
                        "seconds": round(seconds, 1),
                        "fps": round(frames / seconds, 1),
                    }
                )
                print(
                    f"{fmt:<5} {m:g} min ({frames} frames): peak RSS {peak:.1f} MB, {seconds:.0f} s "
                    f"({frames / seconds:.1f} frames/s), {note}",
                    flush=True,
                )
    ok = True
    for fmt in models:
        peaks = [r["peak_rss_mb"] for r in rows if r["format"] == fmt]
        spread = max(peaks) - min(peaks)
        ok &= spread < args.limit_mb
        print(
            f"{fmt}: peak RSS spread {spread:.1f} MB over {minutes} min (limit {args.limit_mb:g} MB): "
            f"{'PASS' if spread < args.limit_mb else 'FAIL'}"
        )
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "fps": args.fps, "load": os.getloadavg()}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
