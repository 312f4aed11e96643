"""Issue 34: every run records what each section cost, and the dear sections are cheap by design (a fixed stratified
subset of faces damaged, paired with its own clean score and a bootstrap interval; a frozen trunk's damaged
features shared through the feature cache)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from support.models import INPUT_SIZE, make_run, one_torch_thread

from affectlab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from affectlab.data.damage import DAMAGES, damaged, get_damage
from affectlab.data.dataset import open_dataset
from affectlab.data.prepared import SplitData
from affectlab.evaluation.cost import COST_SECTIONS, SectionClock
from affectlab.evaluation.evaluate import score
from affectlab.evaluation.faces_in_scenes import faces_in_scenes_section
from affectlab.evaluation.robustness import robustness_section, robustness_subset, severity_plan
from affectlab.experiment import run_experiment
from affectlab.models.checkpoint import load_checkpoint
from affectlab.models.outputs import predict_images
from affectlab.reports.study_report import _markdown, cost_blocks
from affectlab.training.features import FeatureCache

single_thread = pytest.fixture(autouse=True)(one_torch_thread)


def test_the_clock_adds_up_each_section_in_report_order() -> None:
    clock = SectionClock()
    with clock("robustness"):
        pass
    clock.add("train", 2.0)
    clock.add("robustness", 1.0)
    cost = clock.to_dict()
    assert list(cost) == ["train_s", "robustness_s", "total_s"]  # COST_SECTIONS order, total last
    assert cost["train_s"] == 2.0 and 1.0 <= cost["robustness_s"] < 1.5
    assert cost["total_s"] == pytest.approx(cost["train_s"] + cost["robustness_s"], abs=0.011)
    with pytest.raises(ValueError, match="unknown cost section"):
        clock.add("robustnes", 1.0)


def _labelled(n: int, seed: int = 0) -> SplitData:
    rng = np.random.default_rng(seed)
    expression = rng.choice(8, size=n, p=[0.3, 0.25, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05])
    images = rng.integers(0, 256, (n, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    va = rng.uniform(-0.8, 0.8, (n, 2)).astype(np.float32)
    return SplitData([f"s{i}" for i in range(n)], images, expression, va)


def test_the_subset_is_fixed_and_holds_each_class_in_its_share() -> None:
    split = _labelled(600)
    chosen = robustness_subset(split, 150, seed=0)
    assert len(chosen) == 150 == len(set(chosen.tolist())) and (np.diff(chosen) > 0).all()
    np.testing.assert_array_equal(chosen, robustness_subset(split, 150, seed=0))  # the same faces every time
    assert not np.array_equal(chosen, robustness_subset(split, 150, seed=1))
    counts = np.bincount(split.expression, minlength=8)
    taken = np.bincount(split.expression[chosen], minlength=8)
    assert (np.abs(taken - counts * 150 / 600) < 1).all(), (taken, counts)  # proportional, to the face
    np.testing.assert_array_equal(robustness_subset(split, 0), np.arange(600))  # 0: every face
    np.testing.assert_array_equal(robustness_subset(split, 900), np.arange(600))


def test_damage_is_scored_on_the_subset_against_its_own_clean_score(tmp_path: Path) -> None:
    model, meta = load_checkpoint(make_run(tmp_path))
    preprocess = meta.preprocess
    split = _labelled(40)
    outputs = predict_images(model, split.images, preprocess, tta_flip=True)
    config = ModelConfig(backbone="mobilenet_v2", task="multitask", input_size=INPUT_SIZE)
    document = score(outputs, split, config, "test", True)
    section = robustness_section(model, preprocess, split, document, tta_flip=True, faces=16)
    chosen = robustness_subset(split, 16)
    assert (section["faces"], section["of"], section["flip"]) == (16, 40, False)
    # clean: the same 16 faces through the same pass (no flip), not the document's 40 flipped faces
    by_hand = predict_images(model, split.images[chosen], preprocess)
    right = by_hand["probs"].argmax(1) == split.expression[chosen]
    assert section["clean"]["accuracy"] == pytest.approx(right.mean())
    assert section["clean_all"]["accuracy"] == document["classification"]["accuracy"]
    # each face at one severity per damage: blur at severity 2 on the third of the 16 faces the plan deals it
    blur = next(r for r in section["results"] if r["damage"] == "blur" and r["severity"] == 2)
    plan = severity_plan(split.expression[chosen], len(DAMAGES), seed=0)
    dealt = chosen[plan[[d.name for d in DAMAGES].index("blur")] == 2]
    assert blur["faces"] == len(dealt) in (5, 6) and section["passes"] == 9 * 16
    hurt = predict_images(model, damaged(split.images[dealt], get_damage("blur"), 2), preprocess)
    assert blur["accuracy"] == pytest.approx(np.mean(hurt["probs"].argmax(1) == split.expression[dealt]))
    for metric in ("accuracy", "valence_ccc", "arousal_ccc"):
        relative, interval = section[f"{metric}_relative"], section[f"{metric}_relative_interval"]
        if relative is not None:
            assert interval is not None and interval[0] <= relative <= interval[1] and interval[0] < interval[1]
    assert "on 16 of the 40 faces" in section["sentence"] and "95% interval" in section["sentence"]
    # with robustness_flip, damaged faces get the model's flip TTA
    flipped = robustness_section(model, preprocess, split, document, tta_flip=True, faces=16, flip=True)
    assert flipped["flip"] is True and flipped["results"] != section["results"]
    # every severity: each damage scores all 16 faces three times, as before the plan
    every = robustness_section(model, preprocess, split, document, tta_flip=True, faces=16, every_severity=True)
    assert every["passes"] == 27 * 16 and {r["faces"] for r in every["results"]} == {16}
    hurt = predict_images(model, damaged(split.images[chosen], get_damage("blur"), 2), preprocess)
    blur = next(r for r in every["results"] if r["damage"] == "blur" and r["severity"] == 2)
    assert blur["accuracy"] == pytest.approx(np.mean(hurt["probs"].argmax(1) == split.expression[chosen]))
    assert "one severity per damage" in section["sentence"] and "one severity" not in every["sentence"]


def test_the_severity_plan_deals_each_damage_a_third_of_each_class_per_severity() -> None:
    expression = np.repeat(np.arange(8), [30, 24, 21, 18, 18, 15, 12, 12])  # 150 faces, uneven classes
    plan = severity_plan(expression, 9, seed=0)
    assert plan.shape == (9, 150) and set(np.unique(plan)) == {1, 2, 3}
    for row in plan:
        assert (np.bincount(row, minlength=4)[1:] == 50).all()  # a third of the faces per severity
        for code in range(8):
            per_severity = np.bincount(row[expression == code], minlength=4)[1:]
            assert per_severity.max() - per_severity.min() <= 1  # and a third of each class, to the face
    assert len({row.tobytes() for row in plan}) == 9  # each damage deals its own way
    met = np.stack([(plan == s).sum(0) for s in (1, 2, 3)])  # how often each face meets each severity
    assert (met == 3).all()  # once per block of three damages
    groups = {tuple(np.flatnonzero(row == 1)) for row in plan}
    assert len(groups) == 9  # no two damages score the same faces at one severity
    np.testing.assert_array_equal(plan, severity_plan(expression, 9, seed=0))
    assert not np.array_equal(plan, severity_plan(expression, 9, seed=1))


def test_a_frozen_run_records_its_costs_and_shares_damaged_features(demo_data: Path, tmp_path: Path) -> None:
    cfg = RunConfig(
        DataConfig(path=str(demo_data)),
        ModelConfig(backbone="mobilenet_v2", weights="none", task="classification", freeze=True, input_size=48),
        TrainConfig(epochs=2, batch_size=16, faces_in_scenes=False, fit_crop=False, robustness_faces=8),
    )
    data = open_dataset(cfg.data, 48)
    cache = FeatureCache(tmp_path / "cache")
    run = run_experiment(cfg, data, tmp_path / "run", cache, progress=False, efficiency=False)
    assert run is not None and run.used_feature_cache
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    cost = written["cost"]
    assert set(cost) == {"train_s", "calibration_s", "clean_s", "robustness_s", "figures_s", "total_s"}
    assert all(v >= 0 for v in cost.values()) and cost["total_s"] >= cost["train_s"]
    assert set(cost) - {"total_s"} <= {f"{name}_s" for name in COST_SECTIONS}
    # the damaged faces' pooled features went through the cache: the heads on them give what the model gives on
    # the damaged images
    section = written["robustness"]
    assert section["faces"] == 8 and section["flip"] is False and section["passes"] == 9 * 8
    stored = torch_rows(cache)
    assert stored >= len(data.splits["train"]) + 9 * 8
    model, meta = load_checkpoint(tmp_path / "run")
    test = data.splits["test"]
    chosen = robustness_subset(test, 8)
    plan = severity_plan(test.expression[chosen], len(DAMAGES), seed=0)
    dealt = chosen[plan[[d.name for d in DAMAGES].index("jpeg")] == 3]
    hurt = predict_images(model, damaged(test.images[dealt], get_damage("jpeg"), 3), meta.preprocess,
                          calibration=meta.calibration)  # fmt: skip
    jpeg = next(r for r in section["results"] if r["damage"] == "jpeg" and r["severity"] == 3)
    assert jpeg["accuracy"] == pytest.approx(np.mean(hurt["probs"].argmax(1) == test.expression[dealt]))
    # a second model on the same trunk (the study's other task) computes no trunk features at all
    again = run_experiment(cfg, data, tmp_path / "again", cache, progress=False)
    assert again is not None and torch_rows(cache) == stored
    assert again.metrics.robustness is not None and again.metrics.robustness["results"] == section["results"]

    md = _markdown(cost_blocks([{"name": "a", "metrics": written}]), tmp_path)
    assert "| run | train s | calibration s | clean s | robustness s | figures s | total s |" in md
    assert "damages 8 of the" in md and "without the flip TTA" in md


def torch_rows(cache: FeatureCache) -> int:
    """Feature rows held in the cache, over every key."""
    import torch

    return sum(len(torch.load(p, weights_only=True)["hashes"]) for p in cache.root.glob("*.pt"))


def test_a_frozen_trunk_runs_each_scene_crop_once_for_the_models_that_share_it(demo_data: Path, tmp_path: Path) -> None:
    cfg = RunConfig(
        DataConfig(path=str(demo_data)),
        ModelConfig(backbone="mobilenet_v2", weights="none", task="classification", freeze=True, input_size=48),
        TrainConfig(epochs=1, batch_size=16, robustness=False, fit_crop=False),
    )
    data = open_dataset(cfg.data, 48)
    cache = FeatureCache(tmp_path / "cache")
    first = run_experiment(cfg, data, tmp_path / "first", cache, progress=False, efficiency=False)
    assert first is not None and first.used_feature_cache
    scenes = first.metrics.faces_in_scenes
    assert scenes is not None and scenes["found"] > 0
    stored = torch_rows(cache)
    assert stored >= len(data.splits["train"]) + scenes["found"]  # the crops' trunk features were cached
    # what the cached trunk gave is what the whole model gives on the same scenes through PyTorch
    model, meta = load_checkpoint(tmp_path / "first")
    document = json.loads((tmp_path / "first" / "metrics.json").read_text())
    direct = faces_in_scenes_section(model, meta, data.splits["test"], document, tta_flip=False)
    assert (direct["found"], direct["false_boxes"]) == (scenes["found"], scenes["false_boxes"])
    for key in ("accuracy", "ece", "set_coverage"):
        assert direct["found_faces"][key] == pytest.approx(scenes["found_faces"][key], abs=1e-6)
    # the study's other task on the same trunk: its heads only
    regression = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, task="regression"))
    again = run_experiment(regression, data, tmp_path / "again", cache, progress=False, efficiency=False)
    assert again is not None and again.metrics.faces_in_scenes is not None
    assert torch_rows(cache) == stored
