"""DDP on the CPU: two real processes (gloo) started by Lightning, as on a machine with two GPUs.

Checks the things that break silently under DDP: which rank writes, whether validation sees the whole split once,
whether the LR schedule is sized for the sharded loader, and whether the ranks train on disjoint samples.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from affectlab.config import DataConfig
from affectlab.data.dataset import open_dataset
from affectlab.data.split import load_split
from affectlab.models.checkpoint import load_checkpoint
from affectlab.models.outputs import predict_images

pytestmark = pytest.mark.slow
SUPPORT = Path(__file__).parent / "support"


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, check=False, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_ddp_training_writes_one_run_and_validates_on_the_whole_split(demo_data: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "data": {"val_fraction": 0.16},  # 15 validation faces: an odd count, so the sampler pads
                "model": {
                    "backbone": "resnet18",
                    "weights": "none",
                    "task": "multitask",
                    "freeze": False,
                    "input_size": 32,
                },
                "train": {"epochs": 3, "batch_size": 8, "patience": 5, "scheduler": "cosine", "lr": 1e-3, "seed": 0},
            }
        )
    )
    out = tmp_path / "run"
    _run(
        [
            sys.executable,
            "-m",
            "affectlab.cli",
            "train",
            "--recipe",
            str(recipe),
            "--data",
            str(demo_data),
            "--out",
            str(out),
            "--accelerator",
            "cpu",
            "--devices",
            "2",
            "--strategy",
            "ddp",
            "--quiet",
        ],
        tmp_path,
    )
    # One run folder, written once, by rank zero: no second folder, no leftovers, no checkpoints.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.yaml", "run"]
    assert {"config.yaml", "split.json", "history.csv", "model.pt", "metrics.json", "run.json"} <= {
        p.name for p in out.iterdir()
    }
    assert not (out / "checkpoints").exists() and not list(out.glob(".*tmp"))
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["train"]["devices"] == 2 and config["train"]["strategy"] == "ddp"
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 3
    # The cosine schedule reaches its minimum at the last step: sized from the sharded loader, not a single one
    # (sized from the whole loader it would stop halfway, at lr/2).
    assert float(rows[-1]["lr"]) == pytest.approx(0.0, abs=1e-9)
    # Validation metrics of the best epoch equal a single-process evaluation of the saved model on the val split:
    # gathered from both ranks, each sample once.
    model, meta = load_checkpoint(out)
    data = open_dataset(DataConfig(path=str(demo_data), split_file=str(out / "split.json")), 32)
    assert data.assignment == load_split(out / "split.json")
    val = data.splits["val"]
    outputs = predict_images(model, val.images, meta.preprocess)
    best = rows[meta.best_epoch - 1]
    accuracy = float(np.mean(outputs["probs"].argmax(1) == val.expression))
    assert accuracy == pytest.approx(float(best["val_accuracy"]), abs=1e-5)
    assert len(val.ids) % 2 == 1, "an odd split makes the distributed sampler pad: the case that must not count twice"


def test_ddp_ranks_train_on_disjoint_samples(demo_data: Path, tmp_path: Path) -> None:
    _run([sys.executable, str(SUPPORT / "ddp_probe.py"), str(demo_data), str(tmp_path)], tmp_path)
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    n = len(open_dataset(DataConfig(path=str(demo_data)), 32).splits["train"].ids)
    for epoch in range(2):
        a, b = (set(r["epochs"][epoch]) for r in ranks)
        assert len(a | b) == n, f"epoch {epoch + 1}: not every training sample was seen"
        assert len(a & b) <= n % 2, f"epoch {epoch + 1}: ranks share samples beyond the sampler's padding"
    assert ranks[0]["epochs"][0] != ranks[0]["epochs"][1], "each epoch reshuffles"
    assert (tmp_path / "run" / "model.pt").is_file() and not (tmp_path / "run" / "checkpoints").exists()
