"""Progress output: the predict bar's rate is items over the time taken; logs get one line per training epoch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.progress import Progress

from affectlab.runtime.progress import ItemRate


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


#: A small training in a child process whose output is a pipe, as under CI or nohup.
CHILD = """
import sys
from affectlab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from affectlab.data.dataset import open_dataset
from affectlab.training.fit import train_model
model = ModelConfig(backbone="mobilenet_v2", weights="none", task="multitask", freeze=True, input_size=48)
cfg = RunConfig(DataConfig(path=sys.argv[1]), model, TrainConfig(epochs=2, batch_size=16))
train_model(cfg, open_dataset(cfg.data, 48), sys.argv[2], progress=True)
"""


@pytest.mark.slow
def test_training_into_a_log_prints_one_line_per_epoch(demo_data: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(demo_data), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr  # Lightning draws its bars on stdout
    assert "\r" not in output and "it/s" not in output, output[-2000:]  # no redrawn bars
    lines = [line for line in proc.stderr.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2, proc.stderr[-2000:]
    assert re.fullmatch(r"epoch 1/2: train_loss [\d.e+-]+, val_loss [\d.e+-]+, .*\(\d+\.\d s\)", lines[0]), lines[0]
