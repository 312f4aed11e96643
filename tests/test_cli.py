"""End-to-end through the real command line entry point, on synthetic data."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from support.data import write_affectnet
from support.models import scores_of

from affectlab.cli import main
from affectlab.cli.main import build_parser
from affectlab.labels import EMOTIONS

# The robustness and faces-in-scenes sections are tested where they are checked (test_api, test_tradeoff,
# test_robustness, test_faces_in_scenes); off here.
FAST = [
    "--weights",
    "none",
    "--no-freeze",
    "--input-size",
    "32",
    "--epochs",
    "2",
    "--quiet",
    "--set",
    "train.robustness=false",
    "--set",
    "train.faces_in_scenes=false",
]


@pytest.fixture(scope="module")
def study_dir(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "s"
    code = main(["study", "--data", str(demo_data), "--backbones", "resnet18,mobilenet_v2", "--out", str(out), *FAST])
    assert code == 0
    return out


@pytest.mark.slow
def test_study_writes_summary_runs_and_reports(study_dir: Path) -> None:
    summary = json.loads((study_dir / "summary.json").read_text())
    assert [r["name"] for r in summary["runs"]] == [
        "resnet18_classification",
        "resnet18_regression",
        "mobilenet_v2_classification",
        "mobilenet_v2_regression",
    ]
    for run in summary["runs"]:
        assert {"name", "backbone", "task", "weights", "metrics", "train_seconds", "epochs_run"} <= set(run)
        metrics = run["metrics"]
        if run["task"] == "classification":
            assert set(metrics["classification"]) >= {
                "accuracy",
                "f1_weighted",
                "f1_macro",
                "cohen_kappa",
                "auc_ovr",
                "per_class",
                "confusion",
            }
            assert "valence" not in metrics
            assert np.array(metrics["classification"]["confusion"]).sum() == metrics["n"]
            # calibrated on val after selection: the temperature never changes the accuracy
            confidence = metrics["confidence"]
            assert confidence["calibrated_on"] == "val" and confidence["temperature"] > 0
            for when in ("before", "after"):
                assert confidence[when]["accuracy_at_100"] == pytest.approx(metrics["classification"]["accuracy"])
            assert 1 <= confidence["sets"]["mean_size"] <= 8 and (study_dir / run["name"] / "reliability.png").is_file()
        else:
            assert set(metrics["valence"]) == {"rmse", "corr", "sagr", "ccc"} and "classification" not in metrics
            assert set(metrics["confidence"]["intervals"]) == {"valence", "arousal"}
        run_dir = study_dir / run["name"]
        assert json.loads((run_dir / "metrics.json").read_text()) == metrics
        assert {"model.pt", "history.csv", "config.yaml", "split.json", "training_curves.png", "qualitative.png"} <= {
            p.name for p in run_dir.iterdir()
        }
    assert summary["split"]["counts"] == {"train": 68, "val": 14, "test": 14}
    html = (study_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 12 and "src='resnet18" not in html
    assert "random init" in (study_dir / "report.md").read_text()
    assert "Confidence (test split)" in (study_dir / "report.md").read_text()


@pytest.mark.slow
def test_existing_output_is_not_overwritten(
    study_dir: Path, demo_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (study_dir / "summary.json").read_bytes()
    code = main(["study", "--data", str(demo_data), "--out", str(study_dir), *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "pass --overwrite" in err
    assert (study_dir / "summary.json").read_bytes() == before


@pytest.mark.slow
def test_evaluate_on_own_split_and_on_other_data(study_dir: Path, tmp_path: Path) -> None:
    from affectlab.data.demo import generate_demo_dataset

    run = tmp_path / "resnet18_classification"  # a copy: --overwrite rewrites metrics.json, which other tests read
    shutil.copytree(study_dir / run.name, run)
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
        (
            ["study", "--data", "{demo}", "--weights", "imagenet", "--backbones", "vgg16", "--out", "{tmp}/x"],
            "put vgg16-397923af.pth in",
        ),
        (["evaluate", "{tmp}"], "not a run folder"),
        (["train", "--recipe", "{tmp}/none.yaml", "--out", "{tmp}/x"], "recipe file not found"),
        (
            ["train", "--data", "{demo}", "--weights", "imagenet", "--backbone", "vgg16", "--out", "{tmp}/x"],
            "put vgg16-397923af.pth in",
        ),
        (
            ["train", "--data", "{demo}", "--set", "train.epoch=3", "--out", "{tmp}/x"],
            "unknown option 'epoch' in [train]",
        ),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args: list[str], message: str, demo_data: Path, tmp_path: Path) -> None:
    argv = [a.format(tmp=tmp_path, demo=demo_data) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "affectlab.cli", *argv], check=False, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("affectlab: error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()  # a failed start leaves no folder that a rerun would need --overwrite for


def test_unknown_option_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["study", "--data", "demo", "--out", "x", "--bogus"])
    assert exc.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_data_check_reports_problems_and_fails(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(demo_data, broken)
    images = sorted((broken / "images").iterdir())
    images[0].write_bytes(b"not an image")
    shutil.copy(images[1], broken / "images" / "999.png")  # a byte-identical copy under another id and label
    label = int(np.load(broken / "annotations" / f"{images[1].stem}_exp.npy"))
    other = (label + 1) % 8
    for key, value in (("exp", str(other)), ("val", "0.1"), ("aro", "0.9")):
        np.save(broken / "annotations" / f"999_{key}.npy", np.array(value))
    (broken / "annotations" / f"{images[2].stem}_aro.npy").unlink()
    assert main(["data", "check", str(broken)]) == 1
    out = capsys.readouterr().out
    assert f"{images[0].name}: not a readable image" in out
    assert f"missing annotation {images[2].stem}_aro.npy" in out
    assert "byte-identical groups: 1 " in out
    warnings = [line for line in out.splitlines() if "byte-identical images with conflicting labels" in line]
    assert len(warnings) == 1 and warnings[0].startswith("  warning: ")
    assert f"{images[1].stem}={EMOTIONS[label]}" in warnings[0] and f"999={EMOTIONS[other]}" in warnings[0]
    assert "class counts:" in out and "valence: min" in out
    assert main(["data", "check", str(demo_data)]) == 0


@pytest.mark.slow
def test_bad_images_are_skipped_and_reported(demo_data: Path, tmp_path: Path) -> None:
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


@pytest.mark.slow
def test_evaluate_can_switch_flip_tta(study_dir: Path, tmp_path: Path) -> None:
    run = study_dir / "resnet18_classification"
    outcomes = {}
    for flag in ("--tta-flip", "--no-tta-flip"):
        assert main(["evaluate", str(run), "--split", "val", "--out", str(tmp_path / flag), flag]) == 0
        outcomes[flag] = json.loads((tmp_path / flag / "metrics.json").read_text())
    assert outcomes["--tta-flip"]["tta_flip"] is True and outcomes["--no-tta-flip"]["tta_flip"] is False
    assert outcomes["--tta-flip"]["split"] == "val" and outcomes["--tta-flip"]["n"] == 14
    assert outcomes["--tta-flip"]["classification"]["auc_ovr"] != outcomes["--no-tta-flip"]["classification"]["auc_ovr"]


# ---------------------------------------------------------------------------------------------------------------
# Several seeds, same-seed determinism, --split-file
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeds_study(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seeds") / "s"
    argv = ["study", "--data", str(demo_data), "--backbones", "resnet18", "--tasks", "classification", "--seeds", "0,1"]
    assert main([*argv, "--out", str(out), *FAST]) == 0
    return out


@pytest.mark.slow
def test_study_over_seeds_reports_mean_and_std(seeds_study: Path) -> None:
    summary = json.loads((seeds_study / "summary.json").read_text())
    names = [r["name"] for r in summary["runs"]]
    assert names == ["resnet18_classification_seed0", "resnet18_classification_seed1"]
    assert [r["seed"] for r in summary["runs"]] == [0, 1]
    splits = {seed: json.loads((seeds_study / name / "split.json").read_text()) for seed, name in enumerate(names)}
    for seed, name in enumerate(names):  # each seed draws its own split and trains with its own seed
        config = yaml.safe_load((seeds_study / name / "config.yaml").read_text())
        assert config["data"]["split_seed"] == config["train"]["seed"] == seed
        assert splits[seed]["seed"] == seed
        assert summary["split"][str(seed)] == {
            k: v for k, v in splits[seed].items() if k not in ("train", "val", "test")
        }
    assert splits[0]["test"] != splits[1]["test"]
    (entry,) = summary["aggregate"]
    assert (entry["backbone"], entry["task"], entry["seeds"]) == ("resnet18", "classification", [0, 1])
    for key in ("accuracy", "f1_macro", "auc_ovr"):
        a, b = (r["metrics"]["classification"][key] for r in summary["runs"])
        sd = abs(a - b) / math.sqrt(2)  # the sample SD (n - 1) of two seeds
        assert entry[f"classification.{key}"] == pytest.approx({"mean": (a + b) / 2, "std": sd, "n": 2})
    accuracy = entry["classification.accuracy"]
    report = (seeds_study / "report.md").read_text()
    assert f"{accuracy['mean']:.3f} ± {accuracy['std']:.3f}" in report
    threads = {r["machine"]["threads"] for r in summary["runs"]}
    (count,) = threads
    assert (
        f"Seeds: 0, 1 (mean ± sample SD (n − 1) over 2 seeds, each with its own split); trained with {count} " in report
    )
    run = json.loads((seeds_study / names[0] / "run.json").read_text())
    assert run["machine"]["threads"] == count and run["machine"]["cpu_capability"] and run["machine"]["cpu"]
    assert (
        f"machine.threads: {count}" in report
        and f"machine.cpu_capability: {run['machine']['cpu_capability']}" in report
    )


def _history_without_times(run: Path) -> list[dict[str, str]]:
    import csv

    with (run / "history.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_same_seed_trains_the_same_model(seeds_study: Path, demo_data: Path, tmp_path: Path) -> None:
    # `train` with the settings of the study's seed-0 cell: the same split, curves, predictions and metrics.
    out = tmp_path / "again"
    argv = ["train", "--data", str(demo_data), "--backbone", "resnet18", "--task", "classification", "--seed", "0"]
    assert main([*argv, "--out", str(out), *FAST]) == 0
    first = seeds_study / "resnet18_classification_seed0"
    assert json.loads((out / "split.json").read_text()) == json.loads((first / "split.json").read_text())
    assert _history_without_times(out) == _history_without_times(first)
    assert (out / "predictions.csv").read_text() == (first / "predictions.csv").read_text()
    assert scores_of(out) == scores_of(first)


@pytest.mark.slow
def test_split_file_is_used_end_to_end(seeds_study: Path, demo_data: Path, tmp_path: Path) -> None:
    split_file = seeds_study / "resnet18_classification_seed1" / "split.json"
    saved = json.loads(split_file.read_text())
    out = tmp_path / "reused"
    argv = ["train", "--data", str(demo_data), "--backbone", "resnet18", "--seed", "0", "--split-file", str(split_file)]
    assert main([*argv, "--out", str(out), *FAST]) == 0
    assert json.loads((out / "split.json").read_text()) == saved  # not the split seed 0 would draw
    assert (
        saved["test"] != json.loads((seeds_study / "resnet18_classification_seed0" / "split.json").read_text())["test"]
    )
    scored = [line.split(",")[0] for line in (out / "predictions.csv").read_text().splitlines()[1:]]
    assert scored == saved["test"]
    run = json.loads((out / "run.json").read_text())
    assert run["metrics"]["n"] == len(saved["test"]) and run["data"]["counts"] == saved["counts"]


# ---------------------------------------------------------------------------------------------------------------
# Undefined metrics in the result table, and Ctrl-C
# ---------------------------------------------------------------------------------------------------------------


def _constant_head(run: Path, key: str, bias: list[float]) -> None:
    """Make a run's head ignore its input: zero weights, the given bias (so its predictions are known exactly)."""
    import torch

    bundle = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    bundle["state_dict"][f"{key}.3.weight"].zero_()
    bundle["state_dict"][f"{key}.3.bias"].copy_(torch.tensor(bias))
    torch.save(bundle, run / "model.pt")


@pytest.mark.slow
def test_undefined_metrics_print_as_dashes(study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # One class and one V/A value only, predicted exactly: kappa, AUC, CORR and CCC are undefined (None), and the
    # result table once crashed formatting them with :.3f.
    data = write_affectnet(tmp_path / "one", [(str(i), 0, 0.25, -0.5) for i in range(6)])
    runs = {}
    for name, key, bias in (
        ("resnet18_classification", "expression_head", [9.0] + [0.0] * 7),
        ("resnet18_regression", "va_head", [0.25, -0.5]),
    ):
        runs[name] = tmp_path / name
        shutil.copytree(study_dir / name, runs[name])
        _constant_head(runs[name], key, bias)
    capsys.readouterr()
    argv = ["--data", str(data), "--split", "all"]
    assert main(["evaluate", str(runs["resnet18_classification"]), *argv, "--out", str(tmp_path / "c")]) == 0
    assert main(["evaluate", str(runs["resnet18_regression"]), *argv, "--out", str(tmp_path / "r")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("resnet18_")]
    assert rows == [
        "resnet18_classification  acc 1.000 f1w 1.000 kappa - auc -",
        "resnet18_regression  V: rmse 0.000 ccc -  A: rmse 0.000 ccc -",
    ]
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())["classification"]
    assert metrics["cohen_kappa"] is None and metrics["auc_ovr"] is None


@pytest.mark.slow
@pytest.mark.usefixtures("ctrl_c_delivered")
def test_ctrl_c_during_training_exits_130_and_leaves_no_run(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    from affectlab.training import fit

    class CtrlCAfterFirstEpoch(fit.HistoryCallback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
            super().on_train_epoch_end(trainer, pl_module)
            signal.raise_signal(signal.SIGINT)  # a real SIGINT, as a terminal sends it

    monkeypatch.setattr(fit, "HistoryCallback", CtrlCAfterFirstEpoch)
    out = tmp_path / "run"
    argv = ["train", "--data", str(demo_data), "--backbone", "resnet18", "--out", str(out), *FAST, "--epochs", "20"]
    assert main(argv) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "affectlab: interrupted"
    assert not out.exists()  # no model finished: nothing a rerun would need --overwrite for
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the next Ctrl-C still works


def test_evaluate_robustness_flag_defaults_to_the_run_setting() -> None:
    parser = build_parser()
    assert parser.parse_args(["evaluate", "run"]).robustness is None  # the run's train.robustness
    assert parser.parse_args(["evaluate", "run", "--no-robustness"]).robustness is False
    assert parser.parse_args(["evaluate", "run", "--robustness"]).robustness is True
    assert parser.parse_args(["evaluate", "run"]).faces_in_scenes is None  # the run's train.faces_in_scenes
    assert parser.parse_args(["evaluate", "run", "--no-faces-in-scenes"]).faces_in_scenes is False
