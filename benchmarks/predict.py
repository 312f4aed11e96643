"""Inference speed: PyTorch eager vs ONNX Runtime vs ONNX Runtime int8, on the same machine in the same run.

Three measurements per runtime, thread count and batch size (1 and 32):

* ``model``: the network alone on pre-decoded 128 px crops (the runtime comparison the issue asks for);
* ``crops``: ``affectlab`` end to end on the 600 test images of affectnet-3999 with ``--detector none``
  (JPEG decoding, resizing and the model);
* ``scenes``: end to end on 640x480 pictures, each with two test faces pasted at random sizes, with the Haar
  detector (detection, cropping and the model).

Faces per second is total faces / total time. Latency is the wall time of one call (a batch of 1 or 32 images),
p50 and p95. Each configuration runs for at most ``--max-seconds``. int8 agreement (top class, mean |difference|
of probabilities and V/A) is measured against ONNX fp32 on all 600 test crops.

PyTorch's OpenMP threads spin while they wait: on an idle machine that is fastest (2 threads, batch 32: 256
faces/s here, against 143 with ``OMP_WAIT_POLICY=PASSIVE``), but when another process holds a core the spinning
threads collapse (18 faces/s). So that the eager baseline is never crippled, every runtime is tried at 1 and 2
threads, and the eager ``model`` rows are also measured in a child process with ``OMP_WAIT_POLICY=PASSIVE``
(the policy is fixed when OpenMP starts); the best eager row is the baseline.

By default the model is MobileNetV2 with ImageNet weights (from ../shared/weights, copied into a temporary
TORCH_HOME) and an untrained multitask head, at 128x128; ``--run-dir`` benchmarks a trained run instead. The
machine's load average is printed before and after: on a shared 2-core machine, PyTorch's OpenMP threads slow
down badly when another process holds a core, so compare numbers only from runs with a low load.

    python benchmarks/predict.py [--threads 1,2] [--max-seconds 20] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "affectnet-3999"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2-b0353104.pth"


def build_run(tmp: Path) -> Path:
    """MobileNetV2 (ImageNet trunk, untrained multitask head) at 128 px, saved as a run folder."""
    os.environ["TORCH_HOME"] = str(tmp / "torch-home")
    cache = tmp / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(WEIGHTS, cache / WEIGHTS.name)
    import torch

    from affectlab.config import ModelConfig
    from affectlab.data.transforms import Preprocess
    from affectlab.models.affect_model import create_model
    from affectlab.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig(backbone="mobilenet_v2", weights="imagenet", task="multitask", input_size=128)
    model = create_model(config).eval()
    return save_checkpoint(tmp / "run" / "model.pt", model, config, Preprocess(input_size=128)).parent


def split_paths(data: Path) -> tuple[list[Path], list[Path], np.ndarray]:
    """(test paths, train paths, test labels) of the standard seed-0 split: 600 test images on affectnet-3999."""
    from affectlab.data.readers import read_dataset
    from affectlab.data.split import apply_split, make_split

    samples = read_dataset(data).samples
    splits = apply_split(samples, make_split(samples, seed=0))
    labels = np.array([-1 if s.expression is None else s.expression for s in splits["test"]])
    return [s.path for s in splits["test"]], [s.path for s in splits["train"]], labels


def make_scenes(paths: list[Path], out: Path, n: int) -> list[Path]:
    """640x480 JPEGs with two faces each (140-220 px), on a smooth random background."""
    rng = np.random.default_rng(0)
    out.mkdir()
    files = []
    for i in range(n):
        low = rng.integers(40, 200, (4, 4, 3)).astype(np.float32)
        canvas = cv2.resize(low, (640, 480), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
        for j, x0 in enumerate((20, 340)):
            face = cv2.imread(str(paths[(2 * i + j) % len(paths)]))
            side = int(rng.integers(140, 221))
            x, y = x0 + int(rng.integers(0, 280 - side + 1)), int(rng.integers(20, 480 - side - 20))
            canvas[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        files.append(out / f"scene{i:03d}.jpg")
        cv2.imwrite(str(files[-1]), canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return files


def backend_for(name: str, path: Path, threads: int):  # type: ignore[no-untyped-def]
    from affectlab.runtime.backends import OnnxBackend, TorchBackend

    return TorchBackend(path, threads) if name == "pytorch-eager" else OnnxBackend(path, threads)


def bench_runtime(
    name: str,
    path: Path,
    threads: int,
    crops: np.ndarray,
    tests: list[Path],
    scenes: list[Path],
    max_seconds: float,
    inputs: tuple[str, ...] = ("model", "crops", "scenes"),
) -> list[dict]:
    from affectlab.evaluation.efficiency import speed_summary, time_calls
    from affectlab.runtime.predictor import AffectPredictor

    backend = backend_for(name, path, threads)
    rows = []
    for batch in (1, 32):
        chunks = [crops[i : i + batch] for i in range(0, len(crops), batch)]
        model_calls = [lambda c=c: (backend.run(c), len(c))[1] for c in chunks]
        for what, files, detector in (("model", None, None), ("crops", tests, "none"), ("scenes", scenes, "haar")):
            if what not in inputs:
                continue
            if files is None:
                calls = model_calls
            else:
                predictor = AffectPredictor(backend, detector=detector, batch_size=32)
                groups = [files[i : i + batch] for i in range(0, len(files), batch)]
                calls = [lambda g=g, p=predictor: sum(len(r) for r in p.predict(g)) for g in groups]
            latencies, faces = time_calls(calls, warmup=2, max_seconds=max_seconds)
            n_images = min(len(latencies) * batch, len(crops) if files is None else len(files))
            row = {
                "runtime": name,
                "threads": threads,
                "batch": batch,
                "input": what,
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
                **speed_summary(latencies, faces),
            }
            if what == "scenes":
                row["faces_found_per_scene"] = round(faces / max(1, n_images), 3)
            rows.append(row)
            print(_format(row), flush=True)
    return rows


def agreement(fp32: Path, int8: Path, crops: np.ndarray, labels: np.ndarray, threads: int) -> dict[str, float]:
    """int8 against fp32 on every test crop; accuracies against the labels too (meaningful for trained runs)."""
    a, b = (_all_outputs(backend_for("onnx", path, threads), crops) for path in (fp32, int8))
    out: dict[str, float] = {"n": len(crops)}
    if "probs" in a:
        out.update(
            {
                "class_agreement": round(float(np.mean(a["probs"].argmax(1) == b["probs"].argmax(1))), 4),
                "mean_abs_prob_diff": round(float(np.mean(np.abs(a["probs"] - b["probs"]))), 5),
                "max_abs_prob_diff": round(float(np.max(np.abs(a["probs"] - b["probs"]))), 4),
                "accuracy_fp32": round(float(np.mean(a["probs"].argmax(1) == labels)), 4),
                "accuracy_int8": round(float(np.mean(b["probs"].argmax(1) == labels)), 4),
            }
        )
    if "va" in a:
        out["mean_abs_va_diff"] = round(float(np.mean(np.abs(a["va"] - b["va"]))), 5)
    return out


def _all_outputs(backend, crops: np.ndarray) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    parts = [backend.run(crops[i : i + 64]) for i in range(0, len(crops), 64)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _format(row: dict) -> str:  # type: ignore[type-arg]
    policy = " (OMP passive)" if row["omp_wait_policy"] != "default" and row["runtime"] == "pytorch-eager" else ""
    return (
        f"{row['runtime'] + policy:<31} threads {row['threads']} batch {row['batch']:>2} {row['input']:<6} "
        f"{row['faces_per_s']:>8.1f} faces/s  p50 {row['p50_ms']:>8.2f} ms  p95 {row['p95_ms']:>8.2f} ms"
        + (f"  faces/scene {row['faces_found_per_scene']}" if "faces_found_per_scene" in row else "")
    )


def best(rows: list[dict], runtime: str, inp: str, batch: int) -> dict:  # type: ignore[type-arg]
    return max(
        (r for r in rows if r["runtime"] == runtime and r["input"] == inp and r["batch"] == batch),
        key=lambda r: r["faces_per_s"],
    )


def eager_passive_rows(run: Path, crops: np.ndarray, threads: str, max_seconds: float, tmp: Path) -> list[dict]:
    """The eager ``model`` rows again, in a child process started with ``OMP_WAIT_POLICY=PASSIVE``."""
    import subprocess

    np.save(tmp / "crops.npy", crops)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    command = [
        sys.executable,
        __file__,
        "--child-eager",
        str(run),
        "--crops",
        str(tmp / "crops.npy"),
        "--threads",
        threads,
        "--max-seconds",
        str(max_seconds),
    ]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    rows = json.loads(output.strip().splitlines()[-1])
    for row in rows:
        print(_format(row), flush=True)
    return rows


def child_eager(args: argparse.Namespace) -> int:
    crops = np.load(args.crops)
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        rows += bench_runtime("pytorch-eager", args.child_eager, threads, crops, [], [], args.max_seconds, ("model",))
    print(json.dumps(rows))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--run-dir", type=Path, help="benchmark this trained run instead of the ImageNet model")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts to try for every runtime")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time limit per configuration")
    parser.add_argument("--scenes", type=int, default=60, help="pictures with two faces for the detection run")
    parser.add_argument("--out", type=Path, help="write all numbers as JSON")
    parser.add_argument("--child-eager", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--crops", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_eager:
        return child_eager(args)

    from affectlab.data.images import read_rgb, resize_square
    from affectlab.evaluation.efficiency import machine_info
    from affectlab.export.int8 import int8_kernel
    from affectlab.export.onnx import export_onnx

    load_before = os.getloadavg()
    machine = {**machine_info(), "int8_kernel": int8_kernel()}
    print(
        f"machine: {machine['cpu']}, {os.cpu_count()} CPUs, ONNX Runtime int8 kernel: {machine['int8_kernel']}, "
        f"load {load_before}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}"
    )
    with tempfile.TemporaryDirectory(prefix="affectlab-bench-") as tmp_name:
        tmp = Path(tmp_name)
        run = args.run_dir or build_run(tmp)
        tests, train, labels = split_paths(args.data)
        calibration = tmp / "calibration"
        calibration.mkdir()
        for path in train[:: max(1, len(train) // 256)][:256]:  # train images only: never calibrate on the test set
            shutil.copy(path, calibration / path.name)
        fp32 = export_onnx(run, tmp / "model.onnx")
        int8 = export_onnx(run, tmp / "model-int8.onnx", int8=True, calibration=calibration)
        from affectlab.runtime.backends import OnnxBackend

        size = OnnxBackend(fp32).info.preprocess.input_size
        crops = np.stack([resize_square(read_rgb(p), size) for p in tests])
        scenes = make_scenes(tests, tmp / "scenes", args.scenes)
        print(
            f"{len(tests)} test crops at {size} px, {len(scenes)} scenes with 2 faces; int8 calibrated on "
            f"{len(list(calibration.iterdir()))} train images"
        )
        rows: list[dict] = []  # type: ignore[type-arg]
        for threads in (int(t) for t in args.threads.split(",")):
            for name, path in (("pytorch-eager", run), ("onnxruntime", fp32), ("onnxruntime-int8", int8)):
                rows += bench_runtime(name, path, threads, crops, tests, scenes, args.max_seconds)
        if "OMP_WAIT_POLICY" not in os.environ:
            rows += eager_passive_rows(run, crops, args.threads, args.max_seconds, tmp)
        agree = agreement(fp32, int8, crops, labels, int(args.threads.split(",")[-1]))
    load_after = os.getloadavg()
    eager, ort, q8 = (best(rows, r, "model", 32) for r in ("pytorch-eager", "onnxruntime", "onnxruntime-int8"))
    summary = {
        "ort_over_eager_batch32": round(ort["faces_per_s"] / eager["faces_per_s"], 2),
        "int8_over_eager_batch32": round(q8["faces_per_s"] / eager["faces_per_s"], 2),
        "baseline_eager": {k: eager[k] for k in ("threads", "omp_wait_policy", "faces_per_s")},
        "best_threads": {
            "pytorch-eager": eager["threads"],
            "onnxruntime": ort["threads"],
            "onnxruntime-int8": q8["threads"],
        },
        "int8_vs_fp32": agree,
        "machine": machine,
        "load_before": load_before,
        "load_after": load_after,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "summary": summary, "command": sys.argv}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
