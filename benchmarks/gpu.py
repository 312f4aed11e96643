"""GPU figures (issue 26): best-recipe training images/s with augmentation in the loader and on the device,
inference faces/s at batch 1 and 256, and the service's batching against one request at a time.

Made to run as the one prepared script of a lent GPU machine, which has PyTorch but nothing it can download:
everything it needs is generated here (demo faces, synthetic crops) and the network starts from random weights
(speed does not depend on their values). Point ``PYTHONPATH`` at ``src/``. Each part reports ``skipped: why``
when a library it needs is missing (Lightning for training, ONNX Runtime for the ONNX row), so one missing
package costs one part, not the run.

1. **Training**: ``affectlab.train`` with the ``best`` recipe on generated demo faces for ``--epochs`` epochs,
   once with ``train.augment_on=loader`` (torchvision v2 per image, in ``--loader-workers`` loader processes) and
   once with ``augment_on=device`` (kornia per batch on the GPU). Images/s come from the last epoch of the run's
   ``history.csv`` (its wall time, validation included), so the first epoch's start-up is left out.
2. **Inference**: the trained checkpoint through ``TorchBackend`` (the runtime ``predict`` uses on a GPU: flip TTA,
   calibration, copies to and from the device included) at batch 1 and 256; also the ONNX export in ONNX
   Runtime when it has the CUDA provider.
3. **Serving**: the service's ``BatchQueue`` in this process, ``--clients`` closed-loop clients each sending one
   face crop and waiting for its answer (detector ``none``), with ``max_batch`` 1 (one at a time) and 32. HTTP is
   left out: it costs the same per request either way, and the GPU machine may not have the serving extras.

    PYTHONPATH=src python benchmarks/gpu.py [--out gpu.json] [--epochs 3] [--n-per-class 400]
    PYTHONPATH=src python benchmarks/gpu.py --small          # a one-minute check of the script on a CPU
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def device_name() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def last_epoch_rate(run: Path) -> float:
    """Training images per second over the run's last epoch (``history.csv`` keeps the time since the start)."""
    with (run / "history.csv").open() as stream:
        seconds = [float(row["seconds"]) for row in csv.DictReader(stream)]
    train_images = len(json.loads((run / "split.json").read_text())["train"])
    epoch = seconds[-1] - (seconds[-2] if len(seconds) > 1 else 0.0)
    return train_images / epoch


def train_rates(data: Path, scratch: Path, epochs: int, loader_workers: int) -> tuple[dict[str, Any], Path | None]:
    """Images/s of best-recipe training per augmentation site, and the last run (for the inference parts)."""
    try:
        import lightning  # noqa: F401
    except ImportError:
        return {"skipped": "lightning is not installed"}, None
    import affectlab

    rates: dict[str, Any] = {}
    run = None
    for site in ("loader", "device"):
        run = scratch / f"train-{site}"
        started = time.perf_counter()
        affectlab.train(
            "best",
            data=str(data),
            out=run,
            progress=False,
            sets=[
                f"train.epochs={epochs}",
                f"train.augment_on={site}",
                f"train.num_workers={loader_workers}",
                "model.weights=none",
                "train.robustness=false",
                "train.faces_in_scenes=false",
                "train.fit_crop=false",
            ],
        )
        rates[site] = {"images_per_s": round(last_epoch_rate(run), 1), "run_s": round(time.perf_counter() - started)}
        print(f"training, augmentation on the {site}: {rates[site]['images_per_s']} images/s", flush=True)
    return rates, run


def _rate(call: Callable[[], Any], items: int, seconds: float) -> float:
    call()  # warm-up: kernels, allocator, cuDNN's algorithm search
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        done += items
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return done / (time.perf_counter() - started)


def inference_rates(model_file: Path, seconds: float, batches: tuple[int, ...] = (1, 256)) -> dict[str, Any]:
    """Faces/s of the user-facing runtimes (crops in, probabilities and V/A out) per batch size."""
    from affectlab.runtime.backends import OnnxBackend, TorchBackend

    backend = TorchBackend(model_file)
    size = backend.info.preprocess.input_size
    crops = np.random.default_rng(0).integers(0, 256, (max(batches), size, size, 3), dtype=np.uint8)
    rows: dict[str, Any] = {"torch": {"runtime": backend.info.runtime}}
    for batch in batches:
        rows["torch"][f"batch_{batch}"] = round(_rate(lambda b=batch: backend.run(crops[:b]), batch, seconds), 1)
    print(f"inference, {backend.info.runtime}: {rows['torch']}", flush=True)
    try:
        import onnxruntime as ort
    except ImportError:
        rows["onnx"] = {"skipped": "onnxruntime is not installed"}
        return rows
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        rows["onnx"] = {"skipped": f"ONNX Runtime has no CUDA provider ({', '.join(ort.get_available_providers())})"}
        return rows
    from affectlab.export.onnx import export_onnx

    onnx = OnnxBackend(export_onnx(model_file, model_file.with_name("bench.onnx")))
    rows["onnx"] = {"runtime": "onnxruntime (CUDA provider)"}
    for batch in batches:
        rows["onnx"][f"batch_{batch}"] = round(_rate(lambda b=batch: onnx.run(crops[:b]), batch, seconds), 1)
    print(f"inference, ONNX Runtime CUDA: {rows['onnx']}", flush=True)
    return rows


def serving_rates(model_file: Path, clients: int, seconds: float) -> dict[str, Any]:
    """Faces/s of the service's queue with ``clients`` closed-loop clients, one at a time against batched."""
    import affectlab
    from affectlab.serve.batching import BatchQueue

    predictor = affectlab.load(model_file, backend="torch", detector="none", workers=1)
    size = predictor.info.preprocess.input_size
    crop = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)

    async def load_with(max_batch: int) -> float:
        queue = BatchQueue(lambda images: predictor.predict(images), max_batch=max_batch, max_wait_s=0.002)
        await queue.start()
        done = 0
        stop = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await queue.submit(crop)
                done += 1

        await queue.submit(crop)  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        await queue.stop()
        return done / elapsed

    rows = {f"max_batch_{b}": round(asyncio.run(load_with(b)), 1) for b in (1, 32)}
    rows["batched_over_one_at_a_time"] = round(rows["max_batch_32"] / rows["max_batch_1"], 2)
    print(f"serving, {clients} clients, faces/s: {rows}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-per-class", type=int, default=400, help="demo faces per class (8 classes)")
    parser.add_argument("--loader-workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--seconds", type=float, default=10.0, help="per inference and serving measurement")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--small", action="store_true", help="tiny sizes: check the script, not the machine")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    if args.small:
        args.epochs, args.n_per_class, args.seconds, args.clients = 2, 6, 1.0, 4

    from affectlab.data.demo import generate_demo_dataset

    report: dict[str, Any] = {"device": device_name(), "torch": torch.__version__, "small": args.small}
    print(f"{report['device']}, torch {torch.__version__}, load {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="affectlab-gpu-") as tmp:
        scratch = Path(tmp)
        data = generate_demo_dataset(scratch / "demo", n_per_class=args.n_per_class, image_size=224, seed=0)
        report["training"], run = train_rates(data, scratch, args.epochs, args.loader_workers)
        if run is None:  # no Lightning: a fresh best-recipe network, saved as a checkpoint, serves the rest
            from affectlab.config import resolve_config
            from affectlab.data.transforms import Preprocess
            from affectlab.models.affect_model import create_model
            from affectlab.models.checkpoint import save_checkpoint

            model_cfg = resolve_config("best", sets=["model.weights=none"]).single_run().model
            model = create_model(model_cfg).eval()
            save_checkpoint(scratch / "fresh" / "model.pt", model, model_cfg, Preprocess(model_cfg.input_size))
            run = scratch / "fresh"
        report["inference"] = inference_rates(run / "model.pt", args.seconds)
        report["serving"] = serving_rates(run / "model.pt", args.clients, args.seconds)
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
