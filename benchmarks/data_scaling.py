"""Memory of training data loading as the dataset grows: decoded into RAM (raw folder) against streamed (converted).

Usage:
    python benchmarks/data_scaling.py --out /tmp/scaling [--n 10000,25000,50000] [--size 160] [--workers 2]

For each N it writes N synthetic face JPEGs in AffectNet layout (demo faces, each copy made unique by a brightness
shift and noise), converts them with ``affectlab data convert``, and then, each in a fresh process so that peak
memory is its own, loads the training split the way ``affectlab train`` does and reads one epoch of batches
(64 faces, no loader workers, no model):

* ``in RAM``: ``open_dataset`` on the raw folder (hash, split, decode everything into one uint8 array), then its
  ``train_loader``, a shuffled ``DataLoader``;
* ``streamed``: ``open_dataset`` on the converted folder, then its ``train_loader``: LitData's ``StreamingDataset``
  through ``FaceStreamLoader``, decoding each JPEG when it is used.

Reported: the process's peak RSS (``ru_maxrss``, which counts the shard pages LitData maps, up to 4 chunks of
16 MB), its peak anonymous memory (its own allocations, sampled every 10 ms), the RSS after imports (the same for
both), the time to the first batch (including hashing, splitting and decoding for the in-RAM path) and the
epoch's images/s, with the machine's load average (1 minute) when the measurement started: the first batch and
images/s are times, and mean little on a busy machine; the memory columns do not depend on the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 64


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakAnon:
    """The peak of the process's anonymous memory (its own, not file pages mapped from the shards), sampled."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, current_rss_mb("RssAnon"))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, current_rss_mb("RssAnon"))


def make_raw(base: Path, out: Path, n: int, size: int) -> Path:
    """N unique faces in AffectNet layout, drawn from the demo faces in ``base``."""
    import cv2

    if (out / "annotations").is_dir():
        return out
    rng = np.random.default_rng(n)
    faces = [cv2.resize(cv2.imread(str(p)), (size, size)) for p in sorted((base / "images").glob("*.png"))]
    labels = {k: sorted((base / "annotations").glob(f"*_{k}.npy")) for k in ("exp", "val", "aro")}
    values = {k: {p.name.rsplit("_", 1)[0]: str(np.load(p)) for p in v} for k, v in labels.items()}
    ids = [p.stem for p in sorted((base / "images").glob("*.png"))]
    tmp = out.with_name(out.name + ".tmp")
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    (tmp / "annotations").mkdir(exist_ok=True)
    for i in range(n):
        j = i % len(faces)
        noise = rng.integers(-6, 7, faces[j].shape, dtype=np.int16)
        image = np.clip(faces[j].astype(np.int16) + noise + int(rng.integers(-20, 21)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(tmp / "images" / f"{i}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        for key in ("exp", "val", "aro"):
            np.save(tmp / "annotations" / f"{i}_{key}.npy", np.array(values[key][ids[j]]))
    tmp.rename(out)
    return out


def measure(mode: str, data: str, size: int) -> dict[str, Any]:
    """One epoch of training batches from ``data``; runs in its own process (``--measure``)."""
    import torch

    from affectlab.config import DataConfig
    from affectlab.data.dataset import open_dataset
    from affectlab.data.face_tensors import FaceToTensor
    from affectlab.data.transforms import Preprocess

    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    baseline = current_rss_mb()
    anon = PeakAnon()
    started = time.perf_counter()
    dataset = open_dataset(DataConfig(path=data), size)  # in RAM for a raw folder, streamed when converted
    to_tensor = FaceToTensor(Preprocess(input_size=size))
    loader = dataset.train_loader(to_tensor, BATCH, 0, seed=0, generator=torch.Generator().manual_seed(0))
    first = None
    seen = 0
    epoch_started = time.perf_counter()
    for images, *_ in loader:
        if first is None:
            first = time.perf_counter() - started
        seen += len(images)
    epoch = time.perf_counter() - epoch_started
    return {
        "mode": mode,
        "train_images": seen,
        "baseline_rss_mb": round(baseline),
        "peak_rss_mb": round(rss_mb()),
        "peak_anon_mb": round(anon.stop()),
        "first_batch_s": round(first or 0, 2),
        "images_per_s": round(seen / epoch),
        "load": round(load, 1),
    }


def run_measure(mode: str, data: Path, size: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--measure", mode, "--data", str(data), "--size", str(size)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/affectlab-data-scaling")
    parser.add_argument("--n", default="10000,25000,50000", help="dataset sizes (comma-separated)")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--workers", type=int, default=2, help="conversion processes")
    parser.add_argument("--measure", choices=["ram", "stream"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.data, args.size)))
        return
    from affectlab.data.demo import generate_demo_dataset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = out / "base"
    if not base.is_dir():
        generate_demo_dataset(base, n_per_class=50, image_size=args.size, seed=0)
    rows = []
    for n in (int(x) for x in args.n.split(",")):
        raw = make_raw(base, out / f"raw-{n}", n, args.size)
        converted = out / f"converted-{n}-{args.size}"
        convert_s = None
        if not (converted / "manifest.json").is_file():
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "affectlab.cli",
                    "data",
                    "convert",
                    str(raw),
                    "--out",
                    str(converted),
                    "--input-size",
                    str(args.size),
                    "--workers",
                    str(args.workers),
                ],
                check=True,
            )
            convert_s = round(time.perf_counter() - started, 1)
        for mode, data in (("ram", raw), ("stream", converted)):
            row = {"n": n, **run_measure(mode, data, args.size), "convert_s": convert_s if mode == "stream" else None}
            print(json.dumps(row), flush=True)
            rows.append(row)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    lines = [
        f"machine: {machine}; {args.size} px, batch {BATCH}, no loader workers, one epoch of the train split",
        "",
        (
            "| N | train images | mode | peak RSS MB | peak anonymous MB | RSS after imports MB | first batch s | "
            "images/s | load |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['train_images']:,} | {'in RAM' if r['mode'] == 'ram' else 'streamed'} | "
            f"{r['peak_rss_mb']:,} | {r['peak_anon_mb']:,} | {r['baseline_rss_mb']:,} | {r['first_batch_s']} | {r['images_per_s']:,} | "
            f"{r.get('load', '')} |"
        )
    (out / "data_scaling.md").write_text("\n".join(lines) + "\n")
    (out / "data_scaling.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
