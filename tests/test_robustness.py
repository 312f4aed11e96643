"""The robustness section: the test split scored under every damage x severity, its means, and its figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support.models import INPUT_SIZE, make_run, one_torch_thread

from affectlab.config import ModelConfig
from affectlab.data.damage import DAMAGES, damaged, get_damage
from affectlab.data.prepared import SplitData
from affectlab.evaluation.evaluate import score
from affectlab.evaluation.metrics import ccc
from affectlab.evaluation.robustness import robustness_section, severity_plan
from affectlab.evaluation.trust import confidence_metrics, interval_metrics, set_metrics
from affectlab.models.checkpoint import load_checkpoint
from affectlab.models.meta import Calibration
from affectlab.models.outputs import predict_images
from affectlab.reports.run_figures import FIGURE_NAMES, write_evaluation_figures

single_thread = pytest.fixture(autouse=True)(one_torch_thread)


def _split(n: int = 24) -> SplitData:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:INPUT_SIZE, 0:INPUT_SIZE] / INPUT_SIZE
    base = np.stack([0.6 - 0.3 * x, 0.3 + 0.4 * y, 0.5 + 0.2 * np.sin(6 * x * y)], -1)
    images = np.clip(base[None] + rng.normal(0, 0.15, (n, 1, 1, 3)) + rng.normal(0, 0.05, (n, *base.shape)), 0, 1)
    expression = np.arange(n) % 8
    va = rng.uniform(-0.8, 0.8, (n, 2)).astype(np.float32)
    return SplitData([f"s{i}" for i in range(n)], (images * 255).round().astype(np.uint8), expression, va)


#: A calibration as ``fit_calibration`` writes one: a temperature, an APS threshold and V/A half-widths.
CALIBRATION = Calibration(temperature=1.7, coverage=0.9, set_threshold=0.75, va_halfwidth=(0.35, 0.5), n=100)


def test_every_damage_and_severity_is_scored_against_clean(tmp_path: Path) -> None:
    model, meta = load_checkpoint(make_run(tmp_path))
    preprocess = meta.preprocess
    split = _split()
    outputs = predict_images(model, split.images, preprocess, calibration=CALIBRATION)
    raw = predict_images(model, split.images, preprocess)
    config = ModelConfig(backbone="mobilenet_v2", task="multitask", input_size=INPUT_SIZE)
    document = score(outputs, split, config, "test", False, CALIBRATION, raw)
    section = robustness_section(model, preprocess, split, document, tta_flip=False, calibration=CALIBRATION)

    confidence = document["confidence"]
    assert section["clean"] == {
        "accuracy": document["classification"]["accuracy"],
        "valence_ccc": document["valence"]["ccc"],
        "arousal_ccc": document["arousal"]["ccc"],
        # how far the confidence holds on clean faces: the calibrated ECE, the set and interval coverage
        "ece": confidence["after"]["ece"],
        "set_coverage": confidence["sets"]["coverage"],
        "set_size": confidence["sets"]["mean_size"],
        "valence_coverage": confidence["intervals"]["valence"]["coverage"],
        "arousal_coverage": confidence["intervals"]["arousal"]["coverage"],
    }
    assert [(r["damage"], r["severity"]) for r in section["results"]] == [
        (d.name, s) for d in DAMAGES for s in (1, 2, 3)
    ]
    # one result, recomputed by hand: the damaged images through the model, on the faces dealt that severity
    jpeg = next(r for r in section["results"] if r["damage"] == "jpeg" and r["severity"] == 3)
    assert jpeg["setting"] == "quality 10"
    plan = severity_plan(split.expression, len(DAMAGES), seed=0)
    dealt = plan[[d.name for d in DAMAGES].index("jpeg")] == 3
    assert jpeg["faces"] == dealt.sum() == 8
    expression, va = split.expression[dealt], split.va[dealt]
    by_hand = predict_images(
        model, damaged(split.images[dealt], get_damage("jpeg"), 3, seed=0), preprocess, calibration=CALIBRATION
    )
    assert jpeg["accuracy"] == pytest.approx(float(np.mean(by_hand["probs"].argmax(1) == expression)))
    assert jpeg["valence_ccc"] == pytest.approx(ccc(va[:, 0], by_hand["va"][:, 0]))
    # the confidence under this damage: the trust functions' values on the same outputs
    assert jpeg["ece"] == pytest.approx(confidence_metrics(expression, by_hand["probs"])["ece"])
    sets = set_metrics(expression, by_hand["set"])
    assert (jpeg["set_coverage"], jpeg["set_size"]) == pytest.approx((sets["coverage"], sets["mean_size"]))
    intervals = interval_metrics(va, by_hand["va_interval"])
    assert jpeg["arousal_coverage"] == pytest.approx(intervals["arousal"]["coverage"])
    for metric in ("ece", "set_coverage", "valence_coverage"):
        assert section["damaged_mean"][metric] == pytest.approx(np.mean([r[metric] for r in section["results"]]))
    assert len({round(r["ece"], 6) for r in section["results"]}) > 5
    assert "Confidence: ECE" in section["sentence"] and "set coverage" in section["sentence"]
    # damage changes what the model sees: not every result equals the clean score
    assert len({round(r["valence_ccc"], 6) for r in section["results"]}) > 5
    # relative to the clean score of each row's own faces, averaged over the rows like the damaged scores
    rows = [np.flatnonzero(p == s) for p in plan for s in (1, 2, 3)]
    right = outputs["probs"].argmax(1) == split.expression
    by_row = {
        "accuracy": [right[w].mean() for w in rows],
        "valence_ccc": [ccc(split.va[w, 0], outputs["va"][w, 0]) for w in rows],
        "arousal_ccc": [ccc(split.va[w, 1], outputs["va"][w, 1]) for w in rows],
    }
    assert np.mean(by_row["accuracy"]) == pytest.approx(section["clean"]["accuracy"])  # thirds of 8: the same
    for metric in ("accuracy", "valence_ccc", "arousal_ccc"):
        mean = np.mean([r[metric] for r in section["results"]])
        assert section["damaged_mean"][metric] == pytest.approx(mean)
        reference = section["clean_reference"][metric]
        assert reference == pytest.approx(np.mean(by_row[metric]))
        assert section[f"{metric}_relative"] == (pytest.approx(mean / reference) if reference > 0 else None)
    assert section["sentence"].startswith("Under 9 damages x 3 severities")
    # a fixed seed: the same model scores the same under damage, and the training's random stream is untouched
    state = torch.get_rng_state()
    assert robustness_section(model, preprocess, split, document, tta_flip=False, calibration=CALIBRATION) == section
    assert torch.equal(torch.get_rng_state(), state)

    document["robustness"] = section
    written = write_evaluation_figures(tmp_path / "figures", document, outputs, split, title="test")
    assert written["robustness"] == tmp_path / "figures" / FIGURE_NAMES["robustness"]
    assert written["robustness"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_regression_model_is_scored_by_its_ccc(tmp_path: Path) -> None:
    model, meta = load_checkpoint(make_run(tmp_path, task="regression"))
    preprocess = meta.preprocess
    split = _split(16)
    outputs = predict_images(model, split.images, preprocess)
    config = ModelConfig(backbone="mobilenet_v2", task="regression", input_size=INPUT_SIZE)
    document = score(outputs, split, config, "test", tta_flip=False)
    section = robustness_section(model, preprocess, split, document, tta_flip=False)
    assert set(section["clean"]) == {"valence_ccc", "arousal_ccc"} and "accuracy_relative" not in section
    assert all("accuracy" not in r for r in section["results"])
    document["robustness"] = section
    assert "robustness" in write_evaluation_figures(tmp_path / "f", document, outputs, split)


def test_the_study_report_gets_a_robustness_section(tmp_path: Path) -> None:
    from affectlab.reports.study_report import _markdown, _robustness_blocks

    def section(drop: float) -> dict[str, object]:
        results = [
            {"damage": d.name, "severity": s, "setting": d.setting(s), "accuracy": 0.5 - drop * s} for d in DAMAGES
            for s in (1, 2, 3)
        ]  # fmt: skip
        for r in results:
            r |= {"ece": 0.05 + 0.02 * r["severity"], "set_coverage": 0.9 - 0.05 * r["severity"]}
        mean = float(np.mean([r["accuracy"] for r in results]))
        return {
            "seed": 0,
            "clean": {"accuracy": 0.5, "ece": 0.04, "set_coverage": 0.9},
            "results": results,
            "damaged_mean": {"accuracy": mean, "ece": 0.09, "set_coverage": 0.8},
            "accuracy_relative": mean / 0.5,
            "sentence": "Under 9 damages x 3 severities ...",
        }

    runs = [
        {"name": f"resnet18_classification_seed{seed}", "metrics": {"robustness": section(0.05 * (seed + 1))}}
        for seed in (0, 1)
    ]
    aggregate = [
        {
            "backbone": "resnet18",
            "task": "classification",
            "robustness.accuracy_relative": {"mean": 0.7, "std": 0.1, "n": 2},
        }
    ]
    md = _markdown(_robustness_blocks({"runs": runs, "aggregate": aggregate}), tmp_path)
    assert "## Robustness: the test split under camera damage" in md
    # clean / damaged mean / relative, then ECE and set coverage clean / damaged
    assert "| resnet18_classification_seed0 | 0.500 / 0.400 / 0.80 | 0.040 / 0.090 | 0.900 / 0.800 |" in md
    assert "| blur | sigma px 1, sigma px 2, sigma px 3 | 0.070 / 0.090 / 0.110 | 0.070 / 0.090 / 0.110 |" in md  # ECE
    assert "| jpeg | quality 50, quality 25, quality 10 | 0.850 / 0.800 / 0.750 | 0.850 / 0.800 / 0.750 |" in md
    assert "| jpeg | quality 50, quality 25, quality 10 | 0.450 / 0.400 / 0.350 | 0.400 / 0.300 / 0.200 |" in md
    assert "Mean over seeds: resnet18 classification: 0.70 ± 0.10 of clean accuracy." in md
    assert _robustness_blocks({"runs": [{"name": "old", "metrics": {}}], "aggregate": []}) == []  # before the section
