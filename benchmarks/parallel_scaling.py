"""Throughput as work is spread out: loader workers, DDP processes on the CPU, Ray model actors.

Usage:
    python benchmarks/parallel_scaling.py --out /tmp/parallel [--n 5000] [--size 160] [--parts loader,ddp,ray]

Three measurements, each a row of the table in benchmarks/results/parallel-scaling.md; the machine's load
average is recorded before and after each part, because the numbers mean little without it on a shared machine.

* ``loader``: one epoch of the train split of N synthetic 160 px faces (``data_scaling.make_raw``), batches of 64,
  no model, with 0, 1 and 2 loader workers, through ``Dataset.train_loader`` (``open_dataset``): in RAM (the raw
  folder, a shuffled ``DataLoader``) and streamed (the converted folder through ``FaceStreamLoader``). Images/s counts the
  epoch only, from the loader's first request (worker start-up included) to its last batch.
* ``ddp``: ``affectlab train --accelerator cpu`` on 800 demo faces at 64 px (MobileNetV2 from scratch, batch 32
  per process, 3 epochs), with ``--devices 1`` and with ``--devices 2 --strategy ddp`` (gloo). Images/s is the
  training split over the mean of the 2nd and 3rd epochs' time in ``history.csv`` (training plus validation,
  start-up and the first epoch left out).
* ``ray``: ``predict_with_ray`` over 2,000 demo faces at 64 px (``detector none``, an untrained MobileNetV2 at
  64 px, batches of 32) with 1 and 2 model actors and one detect-and-crop actor, on a local Ray cluster with
  3 logical CPUs (one per actor; the machine has fewer cores, so the actors share them). Faces/s is the whole
  run after a warm-up run, Ray's start-up left out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from data_scaling import BATCH, make_raw

WORKERS = (0, 1, 2)


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def epoch_rate(loader: Any) -> tuple[int, float]:
    started = time.perf_counter()
    seen = sum(len(images) for images, *_ in loader)
    return seen, seen / (time.perf_counter() - started)


def loader_rows(out: Path, n: int, size: int) -> list[dict[str, Any]]:
    """Loader images/s against the number of workers, in RAM and streamed."""
    import torch

    from affectlab.config import DataConfig
    from affectlab.data.dataset import open_dataset
    from affectlab.data.demo import generate_demo_dataset
    from affectlab.data.face_tensors import FaceToTensor
    from affectlab.data.transforms import Preprocess

    base = out / "base"
    if not base.is_dir():
        generate_demo_dataset(base, n_per_class=50, image_size=size, seed=0)
    raw = make_raw(base, out / f"raw-{n}", n, size)
    converted = out / f"converted-{n}-{size}"
    if not (converted / "manifest.json").is_file():
        command = ["data", "convert", str(raw), "--out", str(converted), "--input-size", str(size), "--workers", "2"]
        subprocess.run([sys.executable, "-m", "affectlab.cli", *command], check=True)
    torch.set_num_threads(1)
    to_tensor = FaceToTensor(Preprocess(input_size=size))
    datasets = {
        mode: open_dataset(DataConfig(path=str(path)), size) for mode, path in (("ram", raw), ("stream", converted))
    }
    rows = []
    for workers in WORKERS:
        for mode in ("ram", "stream"):
            before = load()
            generator = torch.Generator().manual_seed(0)
            loader = datasets[mode].train_loader(to_tensor, BATCH, workers, seed=0, generator=generator)
            seen, rate = epoch_rate(loader)
            row = {"part": "loader", "mode": mode, "workers": workers, "images": seen, "per_s": round(rate)}
            rows.append(row | {"load_before": before, "load_after": load()})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def ddp_rows(out: Path) -> list[dict[str, Any]]:
    """DDP images/s with 1 and 2 CPU processes through ``affectlab train``."""
    from affectlab.data.demo import generate_demo_dataset

    data = out / "demo-800"
    if not data.is_dir():
        generate_demo_dataset(data, n_per_class=100, image_size=64, seed=0)
    rows = []
    for devices in (1, 2):
        run = out / f"ddp-{devices}"
        before = load()
        command = ["train", "--data", str(data), "--out", str(run), "--overwrite", "--quiet"]
        command += ["--backbone", "mobilenet_v2", "--weights", "none", "--no-freeze", "--task", "multitask"]
        command += ["--input-size", "64", "--epochs", "3", "--batch-size", "32", "--accelerator", "cpu"]
        command += ["--set", "train.patience=10", "--devices", str(devices)]
        if devices > 1:
            command += ["--strategy", "ddp"]
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "affectlab.cli", *command], check=True)
        wall = time.perf_counter() - started
        with (run / "history.csv").open() as f:
            seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
        train_images = len(json.loads((run / "split.json").read_text())["train"])
        per_epoch = (seconds[-1] - seconds[0]) / (len(seconds) - 1)
        row = {"part": "ddp", "processes": devices, "images": train_images, "epoch_s": round(per_epoch, 2)}
        row |= {"per_s": round(train_images / per_epoch), "wall_s": round(wall, 1)}
        rows.append(row | {"load_before": before, "load_after": load()})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def ray_rows(out: Path) -> list[dict[str, Any]]:
    """Ray faces/s against the number of model actors."""
    import ray
    import torch

    from affectlab.batch.ray_engine import RaySettings, predict_with_ray
    from affectlab.config import ModelConfig
    from affectlab.data.demo import generate_demo_dataset
    from affectlab.data.transforms import Preprocess
    from affectlab.models.affect_model import create_model
    from affectlab.models.checkpoint import save_checkpoint
    from affectlab.runtime.settings import PredictConfig
    from affectlab.runtime.sources import expand_inputs

    faces = out / "demo-2000"
    if not faces.is_dir():
        generate_demo_dataset(faces, n_per_class=250, image_size=64, seed=0)
    model = out / "untrained.pt"
    torch.manual_seed(0)
    config = ModelConfig(backbone="mobilenet_v2", weights="none", task="multitask", input_size=64, freeze=False)
    save_checkpoint(model, create_model(config).eval(), config, Preprocess(input_size=64), note="benchmark")
    sources = expand_inputs([str(faces / "images")])
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        for actors in (1, 1, 2):  # the first run warms up (workers, imports)
            config = PredictConfig(detector="none", batch_size=32, threads=1)
            settings = RaySettings(str(model), config, detect_actors=1, model_actors=actors)
            before = load()
            started = time.perf_counter()
            summary = predict_with_ray(settings, sources, out / "ray.parquet")
            rate = summary.faces / (time.perf_counter() - started)
            row = {"part": "ray", "model_actors": actors, "faces": summary.faces, "per_s": round(rate)}
            rows.append(row | {"load_before": before, "load_after": load()})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        ray.shutdown()
    return rows[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/affectlab-parallel-scaling")
    parser.add_argument("--n", type=int, default=5000, help="dataset size for the loader rows")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--parts", default="loader,ddp,ray")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    rows: list[dict[str, Any]] = []
    if "loader" in parts:
        rows += loader_rows(out, args.n, args.size)
    if "ddp" in parts:
        rows += ddp_rows(out)
    if "ray" in parts:
        rows += ray_rows(out)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    lines = [f"machine: {machine}", "", "| part | setting | images/s | load average (1, 5, 15 min) before |"]
    lines.append("|---|---|---|---|")
    for r in rows:
        setting = {
            "loader": lambda r: f"{'in RAM' if r['mode'] == 'ram' else 'streamed'}, {r['workers']} workers",
            "ddp": lambda r: f"{r['processes']} process(es)",
            "ray": lambda r: f"{r['model_actors']} model actor(s)",
        }[r["part"]](r)
        lines.append(f"| {r['part']} | {setting} | {r['per_s']:,} | {r['load_before']} |")
    (out / "parallel_scaling.md").write_text("\n".join(lines) + "\n")
    (out / "parallel_scaling.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
