from __future__ import annotations

import re
from pathlib import Path

import pytest

from affectlab.atomic import RUN_MARKER, atomic_write, prepare_run_dir, run_folder, write_json
from affectlab.config import RunConfig, load_recipe, parse_overrides, with_overrides
from affectlab.errors import AffectlabError

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_failed_write_leaves_neither_file_nor_temp(tmp_path: Path) -> None:
    write_json(tmp_path / "metrics.json", {"a": 1})

    def explode(path: Path) -> None:
        path.write_text('{"half": ')
        raise KeyboardInterrupt  # as if the run were killed mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "metrics.json", explode)
    assert (tmp_path / "metrics.json").read_text().strip() == '{\n  "a": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_nan_is_refused_in_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_json(tmp_path / "m.json", {"x": float("nan")})
    assert not (tmp_path / "m.json").exists()


def test_run_dir_guard(tmp_path: Path) -> None:
    run = prepare_run_dir(tmp_path / "run", overwrite=False)
    (run / "keep.txt").write_text("user data")
    with pytest.raises(AffectlabError, match="pass --overwrite"):
        prepare_run_dir(run, overwrite=False)
    assert (run / "keep.txt").exists()
    assert [p.name for p in prepare_run_dir(run, overwrite=True).iterdir()] == [RUN_MARKER]  # only the new marker


def test_run_folder_is_removed_only_when_nothing_finished(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), run_folder(tmp_path / "early", overwrite=False, keep_if="model.pt") as folder:
        (folder / "history.csv").write_text("epoch\n")
        raise RuntimeError("weights missing")
    assert not (tmp_path / "early").exists()
    with pytest.raises(RuntimeError), run_folder(tmp_path / "late", overwrite=False, keep_if="model.pt") as folder:
        (folder / "model.pt").write_bytes(b"finished")
        raise RuntimeError("figures failed")
    assert (tmp_path / "late" / "model.pt").read_bytes() == b"finished"
    with (  # a user's earlier run is never removed
        pytest.raises(AffectlabError, match="pass --overwrite"),
        run_folder(tmp_path / "late", overwrite=False, keep_if="model.pt"),
    ):
        pass
    assert (tmp_path / "late" / "model.pt").is_file()


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_load(recipe: Path) -> None:
    cfg = load_recipe(recipe)
    assert cfg.model.backbone and cfg.train.epochs > 0


def test_reference_recipe_is_the_study_protocol() -> None:
    cfg = load_recipe(RECIPES / "reference.yaml")
    assert cfg.to_dict()["model"] == RunConfig().to_dict()["model"] | {"backbone": "mobilenet_v2"}
    t = cfg.train
    assert (t.epochs, t.batch_size, t.optimizer, t.lr, t.patience, t.class_weights) == (
        12,
        32,
        "adam",
        1e-3,
        4,
        "balanced",
    )
    assert (cfg.model.input_size, cfg.model.freeze, cfg.model.hidden, cfg.model.dropout) == (128, True, 256, 0.5)


def test_recipe_errors_name_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    with pytest.raises(AffectlabError, match=r"r.yaml \[train\]: unknown option\(s\) epoch"):
        load_recipe(bad)
    bad.write_text("model:\n  task: detection\n")
    with pytest.raises(AffectlabError, match="model.task='detection' is not one of"):
        load_recipe(bad)
    bad.write_text("model: [\n")
    with pytest.raises(AffectlabError, match="not valid YAML"):
        load_recipe(bad)


def test_overrides_are_typed_and_validated() -> None:
    overrides = parse_overrides(
        [
            "model.input_size=224",
            "train.ema_decay=null",
            "train.precision=32",
            "data.class_map={happy: Happy}",
            "train.augment=true",
        ]
    )
    cfg = with_overrides(RunConfig(), overrides)
    assert (cfg.model.input_size, cfg.train.ema_decay, cfg.train.precision) == (224, None, "32")
    assert cfg.data.class_map == {"happy": "Happy"} and cfg.train.augment is True
    assert RunConfig().model.input_size == 128  # the defaults are untouched
    for bad, message in [
        ("train.epochs", "expected SECTION.KEY=VALUE"),
        ("epochs=3", "expected SECTION.KEY=VALUE"),
        ("optim.lr=1", "unknown section 'optim'"),
        ("train.epoch=3", "unknown option 'epoch' in [train]"),
        ("train.lr=[1", "value is not valid YAML"),
    ]:
        with pytest.raises(AffectlabError, match=re.escape(message)):
            parse_overrides([bad])
    for bad, message in [
        ("train.optimizer=sgd", "train.optimizer='sgd' is not one of"),
        ("model.input_size=big", "model.input_size='big' should be of type int"),
        ("train.augment=1", "train.augment=1 should be of type bool"),
        ("train.backbone_lr=fast", "train.backbone_lr='fast' should be of type float | None"),
    ]:
        with pytest.raises(AffectlabError, match=re.escape(message)):
            with_overrides(RunConfig(), parse_overrides([bad]))


def test_recipe_values_of_the_wrong_type_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("model:\n  input_size: large\n")
    with pytest.raises(AffectlabError, match=re.escape("r.yaml: model.input_size='large' should be of type int")):
        load_recipe(bad)
