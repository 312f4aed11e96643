"""What a model costs: parameters, file sizes, FLOPs, and its speed in PyTorch eager and in ONNX Runtime.

A backbone is chosen for a phone or a server on size and speed as much as on accuracy, so the study measures
them on the machine that trained the models, right after training. The measuring is kept short (a study must
not get noticeably slower): a few warm-up calls, then a fixed number of timed calls, each runtime stopped early
when it runs past a time cap, so that a heavy model on a busy CPU cannot stall the study. Timing helpers are
shared with ``benchmarks/predict.py``, which measures the same things at length.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from affectlab.models.meta import ModelMeta

__all__ = [
    "SpeedPlan",
    "count_flops",
    "count_parameters",
    "machine_info",
    "measure_model",
    "measure_speed",
    "speed_summary",
    "time_calls",
]

MB = 1e6  # file sizes in megabytes of 10^6 bytes


@dataclass(frozen=True)
class SpeedPlan:
    """How long to measure: sized so that VGG16 at 128 px on 2 CPU cores stays within about 10 s per model."""

    warmup: int = 2  #: untimed batch-1 calls per runtime (the first ONNX Runtime call is 10x slower)
    batch1_calls: int = 10  #: timed batch-1 calls, for latency p50/p95
    batch_calls: int = 1  #: timed calls at ``batch`` (VGG16: about 3 s each on 2 cores), for faces/s
    batch: int = 32
    max_seconds: float | None = 3.0  #: batch-1 timing stops after this many seconds (a busy CPU), whatever the count


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Total and trainable parameters (a frozen trunk's weights are counted in the total only)."""
    params = list(model.parameters())
    return {"total": sum(p.numel() for p in params), "trainable": sum(p.numel() for p in params if p.requires_grad)}


def count_flops(model: torch.nn.Module, input_size: int, batch: int = 1) -> int:
    """Forward FLOPs for ``batch`` RGB images of ``input_size`` pixels, by ``torch.utils.flop_counter``.

    PyTorch's counter counts convolutions and matrix products, 2 FLOPs per multiply-add (activations, pooling
    and normalisation are not counted; they are a few percent of a CNN's work).
    """
    was_training = model.training
    model.eval()
    images = torch.zeros(batch, 3, input_size, input_size)
    try:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(images)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def training_machine() -> dict[str, Any]:
    """What trains a model and can move its figures, for ``run.json``: PyTorch's intra-op threads (the order of
    its float reductions on a CPU), the CPU, the instruction set PyTorch's kernels use (``AVX512``, ``AVX2``,
    ``DEFAULT``...) and the GPU, if one trained it."""
    return {
        "threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def machine_info() -> dict[str, Any]:
    """The CPU/GPU, the thread counts each runtime uses, and the load when measured (other processes slow it)."""
    from affectlab.runtime.backends import default_threads

    return {
        "cpu": _cpu_name(),
        "cpus": default_threads(),
        "torch_threads": torch.get_num_threads(),
        "onnxruntime_threads": default_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def time_calls(
    calls: Sequence[Callable[[], int]], warmup: int = 2, max_seconds: float | None = None
) -> tuple[list[float], int]:
    """Run zero-argument calls that return a face count: ``warmup`` untimed ones first, then the rest timed.

    The warm-up calls are the first ones of ``calls`` (run again, timed, afterwards). Timing stops early once
    ``max_seconds`` have passed. Returns the latency of each timed call in seconds and the faces they handled.
    """
    for call in calls[:warmup]:
        call()
    latencies: list[float] = []
    faces, start = 0, time.perf_counter()
    for call in calls:
        t0 = time.perf_counter()
        faces += call()
        latencies.append(time.perf_counter() - t0)
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    return latencies, faces


def cpu_ms_per_call(call: Callable[[], object], calls: int, repeat: int = 1) -> float:
    """CPU milliseconds of this process per call, best of ``repeat`` rounds after one untimed call.

    Process time, unlike wall time, does not count other jobs on a shared machine; it does count every thread of
    this process, so compare figures taken with the same thread settings.
    """
    call()
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(calls):
            call()
        best = min(best, (time.process_time() - start) / calls)
    return round(best * 1000, 2)


def speed_summary(latencies: Sequence[float], faces: int) -> dict[str, float]:
    """Faces per second (total faces / total time) and latency p50/p95 per call, in milliseconds."""
    ms = np.asarray(latencies) * 1000
    return {
        "faces_per_s": round(faces / (ms.sum() / 1000), 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "calls": len(ms),
        "faces": faces,
    }


def measure_speed(backend: Any, crops: np.ndarray, plan: SpeedPlan = SpeedPlan()) -> dict[str, dict[str, float]]:
    """Latency at batch 1 and throughput at ``plan.batch`` of one backend (``run(uint8 NHWC crops)``).

    The batch call follows the batch-1 warm-up and timing, so it needs no warm-up of its own.
    """
    if len(crops) < plan.batch:
        raise ValueError(f"need {plan.batch} crops to time batch {plan.batch}, got {len(crops)}")

    def call(batch: np.ndarray) -> Callable[[], int]:
        return lambda: (backend.run(batch), len(batch))[1]

    singles = [call(crops[i : i + 1]) for i in range(plan.batch1_calls)]
    batch1 = speed_summary(*time_calls(singles, plan.warmup, plan.max_seconds))
    batched = [call(crops[: plan.batch])] * plan.batch_calls
    return {"batch1": batch1, f"batch{plan.batch}": speed_summary(*time_calls(batched, warmup=0))}


def measure_model(
    model: torch.nn.Module,
    meta: ModelMeta,
    run_dir: str | Path,
    crops: np.ndarray,
    export: bool = True,
    plan: SpeedPlan = SpeedPlan(),
) -> dict[str, Any]:
    """Size, FLOPs and speed of a trained model; with ``export``, also writes and times ``run_dir/model.onnx``.

    Args:
        model: The trained model, in memory (nothing is reloaded).
        meta: Its metadata (``load_checkpoint`` or ``affectlab.models.checkpoint.checkpoint_meta``).
        run_dir: The run folder holding ``model.pt``; ``model.onnx`` is written there.
        crops: uint8 NHWC face crops at the model's input size (test faces; repeated if fewer than a batch).
        export: Export to ONNX and time ONNX Runtime too.
        plan: How many calls to time.

    Returns:
        The ``efficiency`` record of the study: ``params``, ``checkpoint_mb``, ``onnx_mb``, ``flops``,
        ``speed`` per runtime, ``export_seconds``, ``seconds`` and ``cpu_seconds`` (the whole measurement), ``plan``
        and ``machine``.
    """
    from affectlab.runtime.backends import OnnxBackend, TorchBackend

    started, cpu_started = time.perf_counter(), time.process_time()
    run_dir = Path(run_dir)
    if len(crops) == 0:
        raise ValueError("measure_model needs at least one face crop")
    if len(crops) < plan.batch:  # a small test split: its faces are repeated to fill a batch
        crops = np.concatenate([crops] * -(-plan.batch // len(crops)))[: plan.batch]
    checkpoint = run_dir / "model.pt"
    record: dict[str, Any] = {
        "params": count_parameters(model),
        "checkpoint_mb": round(checkpoint.stat().st_size / MB, 2) if checkpoint.is_file() else None,
        "onnx_mb": None,
        "flops": count_flops(model, meta.preprocess.input_size),
        "machine": machine_info(),
        "plan": asdict(plan),
        "speed": {},
        "export_seconds": None,
    }
    if export:
        from affectlab.export.onnx import checkpoint_sha256, export_loaded

        t0 = time.perf_counter()
        digest = checkpoint_sha256(checkpoint) if checkpoint.is_file() else None  # predict then uses this export
        onnx_path = export_loaded(model, meta, run_dir / "model.onnx", checkpoint_hash=digest)
        record["export_seconds"] = round(time.perf_counter() - t0, 2)
        record["onnx_mb"] = round(onnx_path.stat().st_size / MB, 2)
        record["speed"]["onnxruntime"] = measure_speed(OnnxBackend(onnx_path), crops, plan)
    record["speed"]["pytorch_eager"] = measure_speed(TorchBackend.from_model(model, meta), crops, plan)
    record["seconds"] = round(time.perf_counter() - started, 2)
    record["cpu_seconds"] = round(time.process_time() - cpu_started, 2)  # all threads; less affected by other load
    return record
