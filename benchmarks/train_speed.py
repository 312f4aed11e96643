"""Training-step throughput on CPU for the choices issue 4 asks to measure: channels-last, threads, workers.

Usage: python benchmarks/train_speed.py [--backbone mobilenet_v2] [--size 128] [--steps 6]
Prints images/second for one forward+backward+Adam step at batch 32, for each setting, interleaved so that
background load affects all settings alike.
"""

from __future__ import annotations

import argparse
import time

import torch

from affectlab.config import ModelConfig
from affectlab.models.affect_model import create_model


def step_rate(backbone: str, size: int, steps: int, channels_last: bool, threads: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(
        ModelConfig(backbone=backbone, weights="none", task="multitask", freeze=False, input_size=size)
    )
    x = torch.randn(32, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), 1e-4)
    for i in range(steps + 1):
        if i == 1:
            started = time.perf_counter()  # the first step warms up allocators and kernels
        optimiser.zero_grad()
        out = model(x)
        (out["expression"].logsumexp(1).mean() + out["va"].square().mean()).backward()
        optimiser.step()
    return 32 * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    settings = [(cl, th) for th in (torch.get_num_threads(), 1) for cl in (False, True)]
    rates: dict[tuple[bool, int], list[float]] = {s: [] for s in settings}
    for _ in range(args.repeats):
        for cl, th in settings:
            rates[(cl, th)].append(step_rate(args.backbone, args.size, args.steps, cl, th))
    for (cl, th), values in rates.items():
        print(
            f"{args.backbone} {args.size}px channels_last={cl!s:<5} threads={th}: "
            f"{max(values):6.1f} img/s (best of {len(values)})"
        )


if __name__ == "__main__":
    main()
