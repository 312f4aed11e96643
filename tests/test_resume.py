"""``affectlab train --resume``: a training killed with SIGKILL after its second epoch, resumed, must end exactly
where an uninterrupted run of the same command ends (CPU, same settings, same random number streams)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.models import scores_of

pytestmark = pytest.mark.slow

SETTINGS = [
    "--backbone",
    "mobilenet_v2",
    "--weights",
    "none",
    "--no-freeze",
    "--task",
    "multitask",
    "--input-size",
    "32",
    "--epochs",
    "5",
    "--batch-size",
    "16",
    "--quiet",
    # augmentation, dropout and shuffling draw random numbers; the EMA and the schedule carry state across epochs
    "--set",
    "train.augment=true",
    "--set",
    "train.ema_decay=0.9",
    "--set",
    "train.scheduler=cosine",
    "--set",
    "train.patience=10",
    "--set",
    "train.monitor=val_score",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train(data: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "affectlab.cli", "train", "--data", str(data), "--out", str(out), *SETTINGS]
    return subprocess.Popen([*command, *extra], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _history(run: Path) -> list[dict[str, str]]:
    if not (run / "history.csv").is_file():
        return []
    with (run / "history.csv").open(newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def _finish(process: subprocess.Popen[bytes]) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output.decode(errors="replace")[-3000:]


def test_killed_training_resumes_to_the_same_result(demo_data: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    _finish(_train(demo_data, whole))

    killed = tmp_path / "killed"
    process = _train(demo_data, killed)
    deadline = time.monotonic() + 900  # a safety net: the loop ends at the third epoch
    # three rows written: the full state of epoch 2 was saved before epoch 3 began (epoch 3's may be too)
    while len(_history(killed)) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # no cleanup of any kind runs: as a power cut or the OOM killer
    process.wait()
    assert not (killed / "model.pt").exists(), "the training finished before it could be killed"
    assert (killed / "checkpoints" / "last.ckpt").is_file()
    assert 3 <= len(_history(killed)) < 5

    _finish(_train(demo_data, killed, "--resume"))
    assert _history(killed) == _history(whole)
    assert scores_of(killed) == scores_of(whole)
    assert (killed / "predictions.csv").read_text() == (whole / "predictions.csv").read_text()
    assert not (killed / "checkpoints").exists()
    run = json.loads((killed / "run.json").read_text())
    assert run["name"] == "killed" and run["epochs_run"] == 5


def test_resume_refuses_what_it_cannot_continue(demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from affectlab.cli import main

    base = ["train", "--data", str(demo_data), *SETTINGS]
    assert main([*base, "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    assert main([*base, "--out", str(tmp_path / "x"), "--resume", "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err
