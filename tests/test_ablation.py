"""The ablation sweep (benchmarks/ablation.py) on tiny synthetic data: variants score the validation split only,
finished variants are reused, and a baseline from another config is refused."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY_RECIPE = {
    "model": {"backbone": "resnet18", "weights": "none", "task": "multitask", "freeze": False, "input_size": 32},
    "train": {
        "epochs": 2,
        "batch_size": 16,
        "monitor": "val_score",
        "tta_flip": True,
        "augment": True,
        "va_loss": "mse+ccc",
        "optimizer": "adamw",
        "scheduler": "cosine",
    },
}


@pytest.fixture(scope="module")
def ablation():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "benchmarks" / "ablation.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def recipe(work: Path) -> Path:
    path = work / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_RECIPE))
    return path


@pytest.fixture(scope="module")
def sweep(ablation, recipe: Path, demo_data: Path, work: Path) -> tuple[Path, list[str]]:  # type: ignore[no-untyped-def]
    """A finished two-variant sweep, shared by the tests that read it (each test can run alone)."""
    out = work / "sweep"
    argv = ["--data", str(demo_data), "--out", str(out), "--recipe", str(recipe), "--variants", "no_tta,no_augment"]
    assert ablation.main(argv) == 0
    return out, argv


@pytest.mark.slow
def test_sweep_scores_validation_and_resumes(
    ablation, sweep: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    out, argv = sweep
    result = json.loads((out / "ablation.json").read_text())
    assert list(result["variants"]) == ["baseline", "no_tta", "no_augment"]
    for record in result["variants"].values():
        assert record["metrics"]["split"] == "val" and record["metrics"]["n"] == 14  # never the test split
    assert result["variants"]["baseline"]["metrics"]["tta_flip"] is True
    assert result["variants"]["no_tta"]["metrics"]["tta_flip"] is False
    assert yaml.safe_load((out / "no_augment" / "config.yaml").read_text())["train"]["augment"] is False
    table = (out / "ablation.md").read_text()
    assert table.count("\n| ") == 3 and "no train-time augmentation" in table and "(14 images)" in table
    capsys.readouterr()

    model_bytes = (out / "no_augment" / "model.pt").read_bytes()
    assert ablation.main(argv) == 0  # a rerun reuses finished variants instead of retraining them
    assert (out / "no_augment" / "model.pt").read_bytes() == model_bytes
    assert json.loads((out / "ablation.json").read_text())["variants"]["no_augment"] == result["variants"]["no_augment"]


@pytest.mark.slow
def test_reused_baseline_must_match_the_recipe(
    ablation, sweep: tuple[Path, list[str]], recipe: Path, demo_data: Path, work: Path
) -> None:
    baseline = sweep[0] / "baseline"
    argv = [
        "--data",
        str(demo_data),
        "--recipe",
        str(recipe),
        "--variants",
        "no_tta",
        "--reuse-baseline",
        str(baseline),
    ]
    assert ablation.main([*argv, "--out", str(work / "reuse")]) == 0
    reused = json.loads((work / "reuse" / "ablation.json").read_text())["variants"]["baseline"]
    trained = json.loads((sweep[0] / "ablation.json").read_text())["variants"]["baseline"]
    assert reused["run_dir"] == str(baseline) and reused["best_epoch"] == trained["best_epoch"]
    # history.csv counts from the start of fit; the trained record also counts loader set-up and restoring the best
    # checkpoint, so it is longer (no ratio asserted: on tiny data those fixed costs are a large, varying share)
    assert 0 < reused["train_seconds"] <= trained["train_seconds"]
    for key in ("accuracy", "f1_macro", "auc_ovr"):  # the same model, re-scored on the same validation images
        assert reused["metrics"]["classification"][key] == pytest.approx(trained["metrics"]["classification"][key])
    with pytest.raises(SystemExit, match="different config \\(data, train differ\\)"):
        ablation.main([*argv, "--out", str(work / "other"), "--seed", "1"])


def test_unknown_variant_is_refused(ablation, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ablation.main(["--data", "x", "--out", "y", "--variants", "bogus"])
    assert "unknown variant(s) bogus" in capsys.readouterr().err


@pytest.mark.slow
def test_reseed_measures_noise_and_set_changes_every_variant(
    ablation, recipe: Path, demo_data: Path, work: Path
) -> None:
    out = work / "reseed"
    argv = [
        "--data",
        str(demo_data),
        "--out",
        str(out),
        "--recipe",
        str(recipe),
        "--variants",
        "reseed",
        "--seed",
        "3",
        "--set",
        "train.epochs=1",
    ]
    assert ablation.main(argv) == 0
    base, reseed = (yaml.safe_load((out / name / "config.yaml").read_text()) for name in ("baseline", "reseed"))
    assert (base["data"]["split_seed"], base["train"]["seed"]) == (3, 3)
    assert (reseed["data"]["split_seed"], reseed["train"]["seed"]) == (3, 4)  # same split, another training seed
    assert base["train"]["epochs"] == reseed["train"]["epochs"] == 1
    assert {k: v for k, v in reseed["train"].items() if k != "seed"} == {
        k: v for k, v in base["train"].items() if k != "seed"
    }
