"""Experiment tracking (``train.logger``): a tiny training logged to TensorBoard and a tiny study to MLflow, each
read back from its store; history.csv stays as it is; a missing logger package is one line."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from affectlab.cli import main
from affectlab.config import TrainConfig
from affectlab.training.history import HISTORY_COLUMNS
from affectlab.training.loggers import Tracking, make_loggers

TINY = ["--weights", "none", "--no-freeze", "--input-size", "32", "--epochs", "2", "--quiet",
        "--set", "train.robustness=false", "--set", "train.faces_in_scenes=false", "--set", "train.fit_crop=false"]  # fmt: skip


def test_csv_is_the_default_and_adds_no_logger(tmp_path: Path) -> None:
    assert TrainConfig().logger == "csv"
    assert make_loggers(TrainConfig(), tmp_path, Tracking("x", "y"), {}) == []
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_tensorboard_gets_the_recipe_curves_test_metrics_figures_and_card(demo_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = tmp_path / "run"
    argv = ["train", "--data", str(demo_data), "--task", "multitask", "--out", str(out), "--logger", "tensorboard"]
    assert main([*argv, *TINY]) == 0
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == HISTORY_COLUMNS and len(rows) == 2  # the csv history, as without a logger
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert len(events.Scalars("val_loss")) == len(events.Scalars("train_loss")) == 2  # one point per epoch
    assert [e.value for e in events.Scalars("val_loss")] == pytest.approx([float(r["val_loss"]) for r in rows])
    metrics = json.loads((out / "metrics.json").read_text())
    (accuracy,) = events.Scalars("test/classification/accuracy")
    assert accuracy.value == pytest.approx(metrics["classification"]["accuracy"])
    assert "test/valence/ccc" in tags["scalars"] and any(t.startswith("lr-") for t in tags["scalars"])
    assert {"figures/confusion_matrix", "figures/training_curves", "figures/valence_arousal"} <= set(tags["images"])
    assert "model_card/text_summary" in tags["tensors"]
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["model/input_size"].number_value == 32 and hparams["model/task"].string_value == "multitask"


@pytest.mark.slow
def test_a_study_logs_each_run_to_one_mlflow_experiment(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow puts the artifacts of a SQLite store in ./mlruns
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "grid"
    argv = ["study", "--data", str(demo_data), "--backbones", "resnet18,mobilenet_v2", "--tasks", "classification"]
    assert main([*argv, "--out", str(out), "--logger", "mlflow", *TINY]) == 0
    client = MlflowClient(f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}")  # the default store
    experiment = client.get_experiment_by_name("grid")
    assert experiment is not None
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"resnet18_classification", "mobilenet_v2_classification"}
    for name, run in runs.items():
        assert run.info.status == "FINISHED" and run.data.tags["affectlab.run_folder"] == str(out.resolve() / name)
        assert run.data.params["model/backbone"] == name.split("_classification")[0]
        assert run.data.params["train/epochs"] == "2"
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert run.data.metrics["test/classification/accuracy"] == pytest.approx(metrics["classification"]["accuracy"])
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"MODEL_CARD.md", "config.yaml", "metrics.json", "figures"} <= files
        figures = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "figures")}
        assert {"confusion_matrix.png", "training_curves.png"} <= figures
        card = Path(client.download_artifacts(run.info.run_id, "MODEL_CARD.md", str(tmp_path))).read_text()
        assert "Test metrics" in card and "Training data" in card


@pytest.mark.parametrize(("logger", "module"), [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_logger_package_is_one_line(
    logger: str,
    module: str,
    demo_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if it were not installed
    for verb in ("train", "study"):
        argv = [verb, "--data", str(demo_data), "--out", str(tmp_path / verb), "--logger", logger, *TINY]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"pip install 'affectlab[{logger}]'" in err and "Traceback" not in err
        assert not (tmp_path / verb).exists()  # refused before anything was read or written


def test_a_store_mlflow_refuses_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from affectlab.errors import AffectlabError

    t = TrainConfig(logger="mlflow", logger_uri=f"file:{tmp_path / 'mlruns'}")  # MLflow 3's file store: refused
    with pytest.raises(AffectlabError, match=r"^train.logger_uri file:.*mlruns: ") as raised:
        make_loggers(t, tmp_path, Tracking("x", "y"), {})
    assert "\n" not in str(raised.value)
