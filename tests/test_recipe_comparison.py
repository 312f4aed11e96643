"""benchmarks/recipe_comparison.py on hand-made run folders: means, sample SDs over seeds, thread counts, the noise rows' standard errors, and
one cross-dataset row per group even where two groups trained on the same sources."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("recipe_comparison", ROOT / "benchmarks" / "recipe_comparison.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(
    folder: Path, accuracy: float, fer: float, trained_on: list[str], pyfeat: float | None = None, threads: int = 0
) -> Path:
    folder.mkdir(parents=True)
    metrics = {
        "classification": {"accuracy": accuracy, "f1_macro": accuracy - 0.01},
        "valence": {"ccc": 0.6},
        "arousal": {"ccc": 0.5},
        "robustness": {"accuracy_relative": 0.8},
        "sources": {
            "an": {"classification": {"accuracy": accuracy}, "in_domain": "an" in trained_on},
            "fer": {
                "classification": {"accuracy": fer},
                "classification_shared": {"accuracy": fer + 0.05},
                "in_domain": "fer" in trained_on,
            },
        },
        "shared_classes": ["Neutral"],
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    record = {"backbone": "mobilenet_v2", "task": "multitask", "weights": "imagenet", "trained_on": trained_on}
    machine = {"machine": {"threads": threads}} if threads else {}  # none: a run made before it was recorded
    (folder / "run.json").write_text(json.dumps({**record, "metrics": metrics, **machine}))
    if pyfeat is not None:
        (folder / "cross_tool.json").write_text(json.dumps([{"accuracy": pyfeat, "f1_macro": pyfeat}]))
    return folder


def test_groups_give_mean_sd_and_a_noise_row_with_the_standard_error_of_the_difference(tmp_path: Path) -> None:
    module = _script()
    best = [_run(tmp_path / f"best{i}", a, 0.3, ["an"], pyfeat=0.5) for i, a in enumerate((0.40, 0.50, 0.60))]
    camera = [_run(tmp_path / f"camera{i}", a, 0.4, ["an"]) for i, a in enumerate((0.50, 0.52))]
    groups = {"best": module.summarise(best), "camera": module.summarise(camera)}
    accuracy = groups["best"]["accuracy"]
    assert (accuracy["mean"], accuracy["n"]) == (pytest.approx(0.5), 3)
    assert accuracy["sd"] == pytest.approx(0.1)  # the sample SD (n - 1), as the study report gives
    assert accuracy["variance"] == pytest.approx(0.01)  # the sample variance, for the noise row
    assert "pyfeat_accuracy" not in groups["camera"]  # no cross_tool.json: no py-feat figures
    header, rows = module.users_table(groups, {"best": "2", "camera": "1, 2"})
    assert header[:4] == ["group", "seeds", "threads", "clean acc"]
    assert rows[0][:4] == ["best", "3", "2", "0.500 ± 0.100"]
    assert rows[1][2:4] == ["1, 2", f"0.510 ± {math.sqrt(0.0002):.3f}"]
    assert module.users_table(groups)[1][0][2] == "unknown"
    error = math.sqrt(0.1**2 / 3 + 0.0002 / 2)
    assert rows[2][0] == "Δ camera − best (± SE)"
    assert rows[2][3] == f"+0.010 ± {error:.3f}"
    assert rows[2][header.index("py-feat protocol acc / F1")] == "- / -"


def test_the_script_prints_a_cross_dataset_row_per_group(tmp_path: Path) -> None:
    best = [_run(tmp_path / f"best{i}", 0.5, 0.3, ["an"], threads=2) for i in range(2)]
    both = [_run(tmp_path / f"both{i}", 0.5, 0.6, ["an", "fer"]) for i in range(2)]
    camera = _run(tmp_path / "camera0", 0.5, 0.4, ["an"])
    groups = [f"best={','.join(map(str, best))}", f"camera={camera}", f"both={','.join(map(str, both))}"]
    out = tmp_path / "comparison.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "recipe_comparison.py"), *groups, "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Across datasets" in result.stdout
    assert "NaN" not in out.read_text()  # a one-seed group has no variance: null, never a JSON-breaking NaN
    across = json.loads(out.read_text())["tables"]["across"]
    assert [row[3] for row in across["rows"]] == ["an (best)", "an (camera)", "an + fer (both)"]
    assert across["rows"][2][-2] == "0.600 ± 0.000 / 0.650 ± 0.000 *"
    assert [row[5] for row in across["rows"]] == ["2", "unknown", "unknown"]  # threads, from run.json
    assert json.loads(out.read_text())["threads"] == {"best": "2", "camera": "unknown", "both": "unknown"}
    assert "mean ± sample SD (n − 1)" in result.stdout
    missing = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "recipe_comparison.py"), f"x={tmp_path / 'nowhere'}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode != 0 and "no metrics.json" in missing.stderr
