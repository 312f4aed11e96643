"""Model size, FLOPs and the speed measurement: known small models against values computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from affectlab.evaluation.efficiency import (
    SpeedPlan,
    count_flops,
    count_parameters,
    cpu_ms_per_call,
    machine_info,
    measure_model,
    speed_summary,
    time_calls,
)


def tiny() -> nn.Module:
    """3x3 conv (3 -> 4 channels, padding 1) on 8x8 images, then a linear layer 4*8*8 -> 5."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))


def test_parameters_by_hand() -> None:
    model = tiny()
    # conv: 4 filters of 3x3x3 weights + 4 biases = 112; linear: 256 x 5 weights + 5 biases = 1285
    assert count_parameters(model) == {"total": 112 + 1285, "trainable": 112 + 1285}
    model[0].requires_grad_(False)
    assert count_parameters(model) == {"total": 1397, "trainable": 1285}


def test_flops_by_hand() -> None:
    model = tiny().train()
    # conv: 4 x 8 x 8 outputs, each 3 x 3 x 3 multiply-adds = 6912 MACs; linear: 256 x 5 = 1280 MACs; 2 FLOPs per MAC
    assert count_flops(model, input_size=8) == 2 * (6912 + 1280) == 16384
    assert count_flops(model, input_size=8, batch=3) == 3 * 16384
    assert model.training  # counting leaves the mode as it was
    # a 16x16 input has 4x the conv outputs (the linear layer would not fit: a different model)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    assert count_flops(conv, input_size=16) == 2 * 4 * 16 * 16 * 27


def test_time_calls_warms_up_times_and_stops_early() -> None:
    seen: list[int] = []
    calls = [lambda i=i: (seen.append(i), 2)[1] for i in range(5)]
    latencies, faces = time_calls(calls, warmup=2)
    assert seen == [0, 1, 0, 1, 2, 3, 4]  # warm-up calls are not timed, then every call is
    assert len(latencies) == 5 and faces == 10
    latencies, faces = time_calls(calls, warmup=0, max_seconds=0.0)  # past the cap after the first call
    assert len(latencies) == 1 and faces == 2


def test_cpu_ms_per_call_warms_up_once_and_keeps_the_best_round() -> None:
    count = [0]

    def call() -> None:
        count[0] += 1
        sum(range(200_000))  # about a millisecond of CPU work, so the rounded figure cannot be 0

    ms = cpu_ms_per_call(call, calls=4, repeat=3)
    assert count[0] == 1 + 4 * 3 and ms > 0


def test_speed_summary_by_hand() -> None:
    summary = speed_summary([0.1, 0.2, 0.3, 0.4], faces=8)
    # 8 faces in 1.0 s; p50 between 200 and 300 ms; p95 = 300 + 0.85 x 100 ms (linear interpolation)
    assert summary == {"faces_per_s": 8.0, "p50_ms": 250.0, "p95_ms": 385.0, "calls": 4, "faces": 8}


def test_machine_info_names_cpu_and_threads() -> None:
    info = machine_info()
    assert info["cpu"] and info["torch_threads"] == torch.get_num_threads() and info["onnxruntime_threads"] >= 1


def test_measure_model_exports_and_times_both_runtimes(tmp_path: Path) -> None:
    import onnx

    from affectlab.config import ModelConfig
    from affectlab.data.transforms import Preprocess
    from affectlab.models.affect_model import create_model
    from affectlab.models.checkpoint import checkpoint_meta, save_checkpoint
    from affectlab.runtime.backends import OnnxBackend

    torch.manual_seed(0)
    config = ModelConfig(backbone="resnet18", weights="none", task="multitask", input_size=32)
    model = create_model(config).eval()
    preprocess = Preprocess(input_size=32)
    save_checkpoint(tmp_path / "model.pt", model, config, preprocess)
    crops = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)  # fewer than a batch
    plan = SpeedPlan(warmup=1, batch1_calls=3, batch_calls=1, max_seconds=None)  # no cap: a busy CPU stops none
    record = measure_model(model, checkpoint_meta(config, preprocess), tmp_path, crops, plan=plan)

    assert record["params"] == count_parameters(model) and record["params"]["trainable"] < record["params"]["total"]
    assert record["flops"] == count_flops(model, 32) > 0
    assert record["checkpoint_mb"] == pytest.approx((tmp_path / "model.pt").stat().st_size / 1e6, abs=0.01)
    onnx_path = tmp_path / "model.onnx"
    assert record["onnx_mb"] == pytest.approx(onnx_path.stat().st_size / 1e6, abs=0.01)
    onnx.checker.check_model(str(onnx_path))
    assert OnnxBackend(onnx_path).info.task == "multitask"
    for runtime in ("pytorch_eager", "onnxruntime"):
        speed = record["speed"][runtime]
        assert speed["batch1"]["calls"] == 3 and speed["batch1"]["faces"] == 3
        assert speed["batch32"]["calls"] == 1 and speed["batch32"]["faces"] == 32  # the 5 crops fill a batch of 32
        assert speed["batch1"]["p50_ms"] <= speed["batch1"]["p95_ms"]
    assert record["plan"]["batch1_calls"] == 3 and record["export_seconds"] is not None
    assert record["seconds"] >= record["export_seconds"] and record["cpu_seconds"] > 0

    without = measure_model(
        model, checkpoint_meta(config, preprocess), tmp_path / "none", crops, export=False, plan=plan
    )
    assert (
        set(without["speed"]) == {"pytorch_eager"} and without["onnx_mb"] is None and without["checkpoint_mb"] is None
    )
