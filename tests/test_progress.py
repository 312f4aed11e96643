"""Progress output: the predict bar's rate is items over the time taken; logs get one line per training epoch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.progress import Progress

from affectlab.cli.progress import ItemRate
from affectlab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from affectlab.data.prepared import prepare_data
from affectlab.training.fit import train_model


def test_items_per_second_counts_all_items_over_all_the_time() -> None:
    # Results come a batch at a time: 32 items within a millisecond, after the first batch took two seconds.
    clock = [0.0]
    progress = Progress(get_time=lambda: clock[0], disable=True)
    task_id = progress.add_task("predict", total=64)
    task = progress.tasks[0]
    rates = []
    for batch_done in (2.0, 4.0):
        clock[0] = batch_done
        for _ in range(32):
            clock[0] += 1e-5
            progress.advance(task_id)
        rates.append(str(ItemRate().render(task)))
    assert rates == ["16.0 items/s", "16.0 items/s"]  # rich's own task.speed said 100000 and 31


def test_training_into_a_log_prints_one_line_per_epoch(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = RunConfig(
        DataConfig(path=str(demo_data)),
        ModelConfig(backbone="mobilenet_v2", weights="none", task="multitask", freeze=True, input_size=48),
        TrainConfig(epochs=2, batch_size=16),
    )
    train_model(cfg, prepare_data(cfg.data, 48), tmp_path / "run", progress=True)
    err = capsys.readouterr().err  # captured: not a terminal
    assert "\r" not in err and "it/s" not in err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2, err
    assert re.fullmatch(r"epoch 1/2: train_loss [\d.e+-]+, val_loss [\d.e+-]+, .*\(\d+\.\d s\)", lines[0]), lines[0]
