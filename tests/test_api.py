"""The Python API and the one configuration path behind it and the CLI."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
import torch

import affectlab
from affectlab.cli import build_parser
from affectlab.config import RunConfig, TrainConfig, load_recipe, packaged_recipes, resolve_config
from affectlab.errors import AffectlabError


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_resolution_order_defaults_recipe_flags_set(tmp_path: Path) -> None:
    recipe = _write(tmp_path / "r.yaml", "model:\n  input_size: 96\ntrain:\n  epochs: 5\n  lr: 0.01\n")
    cfg = resolve_config(recipe, {"data.path": "/d", "epochs": 7}, ["train.epochs=9", "train.batch_size=8"])
    assert cfg.model.input_size == 96  # recipe over default
    assert cfg.train.lr == 0.01  # recipe, no flag
    assert cfg.train.epochs == 9  # --set over the flag over the recipe
    assert cfg.train.batch_size == 8
    assert cfg.train.patience == TrainConfig().patience  # default
    assert resolve_config(recipe, {"data.path": "/d", "epochs": 7}).train.epochs == 7  # flag over recipe
    # --seed is the one shorthand: it draws the split and seeds the training alike; --set can part them
    cfg = resolve_config(None, {"data.path": "/d", "seed": 3}, ["train.seed=4"])
    assert (cfg.data.split_seed, cfg.train.seed) == (3, 4)
    # a keyword of None is a value too: best's EMA turned off from Python, as --set train.ema_decay=null does
    assert resolve_config("best", {"data.path": "/d"}).train.ema_decay == 0.99
    assert resolve_config("best", {"data.path": "/d", "ema_decay": None}).train.ema_decay is None
    assert resolve_config("best", {"data.path": "/d"}, ["train.ema_decay=null"]).train.ema_decay is None


def test_demo_data_takes_the_packaged_demo_recipe_unless_one_is_given() -> None:
    assert {"reference", "best", "demo"} <= set(packaged_recipes())
    demo = resolve_config(None, {"data.path": "demo"})
    assert demo == load_recipe("demo") and demo.model.backbone == "resnet18" and demo.study.backbones == ["resnet18"]
    assert resolve_config(None, {"data.path": "demo", "input_size": 48}).model.input_size == 48  # flags still win
    assert resolve_config("reference", {"data.path": "demo"}).model.backbone == "mobilenet_v2"
    assert resolve_config(None, {"data.path": "/d"}) == RunConfig(data=RunConfig().data.__class__(path="/d"))


def test_a_recipes_backbone_and_task_are_never_replaced_by_the_study_defaults(tmp_path: Path) -> None:
    best = resolve_config("best", {"data.path": "/d"})
    assert (best.study.backbones, best.study.tasks) == (["face_resnet29"], ["multitask"])
    reference = resolve_config("reference", {"data.path": "/d"})  # its own grid: the study's four models
    assert (reference.study.backbones, reference.study.tasks) == (
        ["vgg16", "mobilenet_v2"],
        ["classification", "regression"],
    )
    one = _write(tmp_path / "one.yaml", "model:\n  backbone: resnet18\n")
    assert resolve_config(one, {"data.path": "/d"}).study.backbones == ["resnet18"]
    flagged = resolve_config("reference", {"data.path": "/d", "backbone": "resnet50", "task": "multitask"})
    assert (flagged.study.backbones, flagged.study.tasks) == (["resnet50"], ["multitask"])
    per_backbone = resolve_config("reference", {"data.path": "/d", "study.backbone_weights": {"vgg16": "none"}})
    assert per_backbone.cell("vgg16", "regression", 2).model.weights == "none"
    cell = per_backbone.cell("mobilenet_v2", "regression", 2)
    assert (cell.model.weights, cell.data.split_seed, cell.train.seed) == ("imagenet", 2, 2)
    assert (cell.study.backbones, cell.study.tasks, cell.study.seeds) == (["mobilenet_v2"], ["regression"], [2])


def test_choices_come_from_the_literal_types() -> None:
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    by_dest = {action.dest: action for action in train._actions}
    hints = typing.get_type_hints(TrainConfig)
    assert tuple(by_dest["strategy"].choices) == typing.get_args(hints["strategy"])
    assert tuple(by_dest["accelerator"].choices) == typing.get_args(hints["accelerator"])
    assert tuple(by_dest["task"].choices) == ("classification", "regression", "multitask")
    for bad, message in (
        (["train.scheduler=linear"], r"train.scheduler='linear' is not one of none, cosine, onecycle"),
        (
            ["study.tasks=[detection]"],
            r"study.tasks=\['detection'\] has an item that is not one of classification, regression, multitask",
        ),
        (["model.input_size=big"], r"model.input_size='big' should be of type int"),
    ):
        with pytest.raises(AffectlabError, match=message):
            resolve_config(None, {"data.path": "/d"}, bad)
    with pytest.raises(AffectlabError, match="unknown option 'epoch'"):
        resolve_config(None, {"data.path": "/d", "epoch": 3})


@pytest.mark.slow
def test_train_then_evaluate_through_the_api(demo_data: Path, tmp_path: Path) -> None:
    run = affectlab.train(
        data=str(demo_data),
        out=tmp_path / "run",
        progress=False,
        backbone="resnet18",
        weights="none",
        freeze=False,
        input_size=32,
        epochs=2,
        patience=2,
        task="multitask",
    )
    assert run is not None and run.path == tmp_path / "run" and run.task == "multitask"
    assert run.metrics.split == "test" and run.metrics.accuracy is not None and run.metrics.ccc is not None
    assert json.loads((run.path / "run.json").read_text()) == json.loads(json.dumps(run.to_dict()))
    machine = run.to_dict()["machine"]  # what can move the figures: threads, CPU and its instruction set
    assert machine["threads"] == torch.get_num_threads() and machine["cpu"] and machine["cpu_capability"]
    saved = load_recipe(run.path / "config.yaml")
    assert saved == run.config and saved.model.input_size == 32 and saved.study.backbones == ["resnet18"]
    # evaluate scores the saved model on the same test split: the same numbers as training's own scoring
    again = affectlab.evaluate(run, out=tmp_path / "again")
    assert again.path == tmp_path / "again" / "metrics.json"
    assert again.classification == run.metrics.classification and again.valence == run.metrics.valence
    # ...and the same scores under camera damage, generated again from the fixed seed
    assert run.metrics.robustness is not None and again.robustness == run.metrics.robustness
    assert (tmp_path / "again" / "robustness.png").is_file()
    # ...and the same faces in scenes, through the runtime predictor as the saved model.pt predicts
    assert run.metrics.faces_in_scenes is not None and again.faces_in_scenes == run.metrics.faces_in_scenes
    quick = affectlab.evaluate(run, out=tmp_path / "quick", robustness=False, faces_in_scenes=False)
    assert quick.robustness is None and quick.faces_in_scenes is None
    assert again.val_score == pytest.approx(run.metrics.val_score)
    val = affectlab.evaluate(run.path, split="val", out=tmp_path / "val")
    assert val.split == "val" and val.classification != run.metrics.classification  # another split
