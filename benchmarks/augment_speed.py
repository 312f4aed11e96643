"""Augmentation throughput: per image in the loader (torchvision v2 on uint8) against per batch on the training
device (``train.augment_on=device``, kornia), each followed by the normalisation the model needs.

Usage:
    python benchmarks/augment_speed.py [--n 2048] [--size 160] [--batch 64] [--device cuda]

Run it on the machine that will train: on a CPU both paths share the same cores, on a GPU the device path moves
the work off the loader's processes. Images are random uint8 faces-sized arrays (the content does not change the
cost). Prints images/s for each path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from affectlab.data.face_tensors import FaceDataset, FaceToTensor
from affectlab.data.transforms import Preprocess
from affectlab.training.device_inputs import DeviceInputs


def _split(n: int, size: int):  # type: ignore[no-untyped-def]
    from affectlab.data.prepared import SplitData

    images = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return SplitData([str(i) for i in range(n)], images, np.zeros(n, dtype=np.int64), np.zeros((n, 2), np.float32))


def loader_path(split, preprocess: Preprocess, batch: int, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    data = FaceDataset(split, FaceToTensor(preprocess, augment=True))
    started = time.perf_counter()
    for start in range(0, len(data), batch):
        inputs = torch.stack([data[i][0] for i in range(start, min(start + batch, len(data)))]).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    del inputs
    return len(data) / (time.perf_counter() - started)


def device_path(split, preprocess: Preprocess, batch: int, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    data = FaceDataset(split, FaceToTensor(preprocess, raw=True))
    augment = DeviceInputs(preprocess, augment=True).to(device)
    started = time.perf_counter()
    for start in range(0, len(data), batch):
        raw = torch.stack([data[i][0] for i in range(start, min(start + batch, len(data)))]).to(device)
        augment(raw, training=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(data) / (time.perf_counter() - started)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    split, preprocess = _split(args.n, args.size), Preprocess(input_size=args.size)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.n} images at {args.size} px, batch {args.batch}, on {name}; load average {os.getloadavg()[0]:.1f}")
    torch.manual_seed(0)
    for label, path in (
        ("loader (per image, torchvision v2)", loader_path),
        ("device (per batch, kornia)", device_path),
    ):
        path(_split(args.batch, args.size), preprocess, args.batch, device)  # warm-up
        print(f"{label:<36} {path(split, preprocess, args.batch, device):8.0f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
