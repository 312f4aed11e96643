"""End-to-end through the real command line entry point, on synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from affectlab.cli import main

FAST = ["--weights", "none", "--no-freeze", "--input-size", "32", "--epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def study_dir(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "s"
    code = main(["study", "--data", str(demo_data), "--backbones", "resnet18,mobilenet_v2", "--out", str(out), *FAST])
    assert code == 0
    return out


def test_study_writes_summary_runs_and_reports(study_dir: Path) -> None:
    summary = json.loads((study_dir / "summary.json").read_text())
    assert [r["name"] for r in summary["runs"]] == [
        "resnet18_classification", "resnet18_regression", "mobilenet_v2_classification", "mobilenet_v2_regression"
    ]
    for run in summary["runs"]:
        assert {"name", "backbone", "task", "weights", "metrics", "train_seconds", "epochs_run"} <= set(run)
        metrics = run["metrics"]
        if run["task"] == "classification":
            assert set(metrics["classification"]) >= {"accuracy", "f1_weighted", "f1_macro", "cohen_kappa", "auc_ovr",
                                                      "per_class", "confusion"}
            assert "valence" not in metrics
            assert np.array(metrics["classification"]["confusion"]).sum() == metrics["n"]
        else:
            assert set(metrics["valence"]) == {"rmse", "corr", "sagr", "ccc"} and "classification" not in metrics
        run_dir = study_dir / run["name"]
        assert json.loads((run_dir / "metrics.json").read_text()) == metrics
        assert {"model.pt", "history.csv", "config.yaml", "split.json", "training_curves.png", "qualitative.png"} <= {
            p.name for p in run_dir.iterdir()
        }
    assert summary["split"]["counts"] == {"train": 68, "val": 14, "test": 14}
    html = (study_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 12 and "src='resnet18" not in html
    assert "random init" in (study_dir / "report.md").read_text()


def test_existing_output_is_not_overwritten(study_dir: Path, demo_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (study_dir / "summary.json").read_bytes()
    code = main(["study", "--data", str(demo_data), "--out", str(study_dir), *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "pass --overwrite" in err
    assert (study_dir / "summary.json").read_bytes() == before


def test_evaluate_on_own_split_and_on_other_data(study_dir: Path, tmp_path: Path) -> None:
    from affectlab.data.demo import generate_demo_dataset

    run = study_dir / "resnet18_classification"
    assert main(["evaluate", str(run)]) == 2  # metrics.json exists already
    assert main(["evaluate", str(run), "--overwrite"]) == 0
    again = json.loads((run / "metrics.json").read_text())
    assert again["classification"]["accuracy"] == pytest.approx(
        json.loads((study_dir / "summary.json").read_text())["runs"][0]["metrics"]["classification"]["accuracy"]
    )
    other = generate_demo_dataset(tmp_path / "other", n_per_class=3, image_size=48, seed=7)
    assert main(["evaluate", str(run), "--data", str(other), "--split", "all", "--out", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == 24 and metrics["split"] == "all"
    assert (tmp_path / "ev" / "confusion_matrix.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["study", "--data", "/no/such/folder", "--out", "{tmp}/x"], "/no/such/folder: no such file or folder"),
        (["study", "--data", "{demo}", "--backbones", "vgg17", "--out", "{tmp}/x"], "unknown backbone 'vgg17'"),
        (["study", "--data", "{demo}", "--weights", "imagenet", "--backbones", "vgg16", "--out", "{tmp}/x"],
         "put vgg16-397923af.pth in"),
        (["evaluate", "{tmp}"], "not a run folder"),
        (["train", "--recipe", "{tmp}/none.yaml", "--out", "{tmp}/x"], "recipe file not found"),
        (["train", "--data", "{demo}", "--weights", "imagenet", "--backbone", "vgg16", "--out", "{tmp}/x"],
         "put vgg16-397923af.pth in"),
        (["train", "--data", "{demo}", "--set", "train.epoch=3", "--out", "{tmp}/x"], "unknown option 'epoch' in [train]"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args: list[str], message: str, demo_data: Path, tmp_path: Path) -> None:
    argv = [a.format(tmp=tmp_path, demo=demo_data) for a in args]
    proc = subprocess.run([sys.executable, "-m", "affectlab.cli", *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("affectlab: error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()  # a failed start leaves no folder that a rerun would need --overwrite for


def test_unknown_option_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["study", "--data", "demo", "--out", "x", "--bogus"])
    assert exc.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_data_check_reports_problems_and_fails(demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(demo_data, broken)
    images = sorted((broken / "images").iterdir())
    images[0].write_bytes(b"not an image")
    shutil.copy(images[1], broken / "images" / "999.png")
    for key, value in (("exp", "3"), ("val", "0.1"), ("aro", "0.9")):
        np.save(broken / "annotations" / f"999_{key}.npy", np.array(value))
    (broken / "annotations" / f"{images[2].stem}_aro.npy").unlink()
    assert main(["data", "check", str(broken)]) == 1
    out = capsys.readouterr().out
    assert f"{images[0].name}: not a readable image" in out
    assert f"missing annotation {images[2].stem}_aro.npy" in out
    assert "byte-identical images with conflicting labels" in out or "byte-identical groups: 1" in out
    assert "class counts:" in out and "valence: min" in out
    assert main(["data", "check", str(demo_data)]) == 0


def test_bad_images_are_skipped_and_reported(demo_data: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "b"
    shutil.copytree(demo_data, broken)
    victim = sorted((broken / "images").iterdir())[5]
    victim.write_bytes(b"\x89PNG broken")
    out = tmp_path / "run"
    options = ["--set", "train.label_smoothing=0.2", "--set", "model.hidden=32"]  # any recipe option, typed
    assert main(["train", "--data", str(broken), "--backbone", "resnet18", "--out", str(out), *FAST, *options]) == 0
    resolved = (out / "config.yaml").read_text()
    assert "label_smoothing: 0.2\n" in resolved and "hidden: 32\n" in resolved
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["samples"] == 96 and sum(run["data"]["counts"].values()) == 95
    assert len(run["data"]["skipped"]) == 1 and victim.name in run["data"]["skipped"][0]
    assert main(["train", "--data", str(broken), "--on-bad-sample", "error", "--out", str(tmp_path / "r2"), *FAST]) == 2


def test_data_demo_writes_affectnet_layout(tmp_path: Path) -> None:
    assert main(["data", "demo", str(tmp_path / "d"), "--n-per-class", "2", "--size", "32"]) == 0
    images = list((tmp_path / "d" / "images").iterdir())
    assert len(images) == 16 and cv2.imread(str(images[0])).shape == (32, 32, 3)


def test_evaluate_can_switch_flip_tta(study_dir: Path, tmp_path: Path) -> None:
    run = study_dir / "resnet18_classification"
    outcomes = {}
    for flag in ("--tta-flip", "--no-tta-flip"):
        assert main(["evaluate", str(run), "--split", "val", "--out", str(tmp_path / flag), flag]) == 0
        outcomes[flag] = json.loads((tmp_path / flag / "metrics.json").read_text())
    assert outcomes["--tta-flip"]["tta_flip"] is True and outcomes["--no-tta-flip"]["tta_flip"] is False
    assert outcomes["--tta-flip"]["split"] == "val" and outcomes["--tta-flip"]["n"] == 14
    assert outcomes["--tta-flip"]["classification"]["auc_ovr"] != outcomes["--no-tta-flip"]["classification"]["auc_ovr"]
