"""The trade-off figure's data (points, Pareto set, sentence) from a study's numbers, and the study report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from affectlab.reports.tradeoff import TradeoffPoint, pareto_front, plot_tradeoff, tradeoff_panels, tradeoff_sentence


def run(
    backbone: str,
    task: str,
    weights: str,
    metrics: dict[str, Any],
    fps: dict[str, float],
    mb: float,
    params: int,
    seed: int = 0,
) -> dict[str, Any]:
    speed = {rt: {"batch1": {"p50_ms": 1.0, "p95_ms": 2.0}, "batch32": {"faces_per_s": v}} for rt, v in fps.items()}
    return {
        "name": f"{backbone}_{task}",
        "backbone": backbone,
        "task": task,
        "weights": weights,
        "seed": seed,
        "metrics": metrics,
        "efficiency": {"speed": speed, "checkpoint_mb": mb, "params": {"total": params}},
    }


def acc(value: float) -> dict[str, Any]:
    return {"classification": {"accuracy": value}}


def ccc(v: float, a: float) -> dict[str, Any]:
    return {"valence": {"ccc": v}, "arousal": {"ccc": a}}


SUMMARY = {
    "runs": [
        run(
            "vgg16",
            "classification",
            "none",
            acc(0.127),
            {"onnxruntime": 20.0, "pytorch_eager": 10.0},
            58.9,
            14_848_584,
        ),
        run(
            "vgg16",
            "regression",
            "none",
            ccc(0.010, -0.004),
            {"onnxruntime": 20.0, "pytorch_eager": 10.0},
            58.9,
            14_846_530,
        ),
        run(
            "mobilenet_v2",
            "classification",
            "imagenet",
            acc(0.288),
            {"onnxruntime": 500.0, "pytorch_eager": 200.0},
            9.1,
            2_553_672,
        ),
        run(
            "mobilenet_v2",
            "regression",
            "imagenet",
            ccc(0.187, 0.115),
            {"onnxruntime": 480.0, "pytorch_eager": 200.0},
            9.1,
            2_552_130,
        ),
    ]
}


def test_points_pareto_and_sentence_from_the_study_numbers() -> None:
    panels = {p.task: p for p in tradeoff_panels(SUMMARY)}
    cls, reg = panels["classification"], panels["regression"]
    assert cls.metric == "accuracy" and cls.runtime == "onnxruntime"
    assert cls.points == [
        TradeoffPoint("vgg16 (random init)", 0.127, 20.0, 58.9, 14_848_584),
        TradeoffPoint("mobilenet_v2", 0.288, 500.0, 9.1, 2_553_672),
    ]
    assert cls.pareto == ["mobilenet_v2"]  # better on both axes: it alone is on the front
    assert cls.sentence == (
        "mobilenet_v2 is 25.0× faster and 6.5× smaller than vgg16 (random init), and 16.1 points "
        "more accurate (accuracy 0.288 vs 0.127)."
    )
    assert [(p.label, p.score, p.faces_per_s) for p in reg.points] == [
        ("vgg16 (random init)", pytest.approx(0.003), 20.0),
        ("mobilenet_v2", pytest.approx(0.151), 480.0),
    ]
    assert reg.sentence == (
        "mobilenet_v2 is 24.0× faster and 6.5× smaller than vgg16 (random init), and 0.148 higher "
        "in mean CCC (mean CCC 0.151 vs 0.003)."
    )
    json.dumps([p.to_dict() for p in panels.values()], allow_nan=False)


def test_seeds_are_averaged_and_eager_is_used_when_a_model_has_no_onnx() -> None:
    runs = [
        run("a", "classification", "imagenet", acc(0.30), {"pytorch_eager": 100.0}, 10.0, 1000, seed=0),
        run("a", "classification", "imagenet", acc(0.40), {"pytorch_eager": 300.0}, 10.0, 1000, seed=1),
        run("b", "classification", "imagenet", acc(0.50), {"pytorch_eager": 50.0, "onnxruntime": 90.0}, 40.0, 4000),
    ]
    (panel,) = tradeoff_panels({"runs": runs})
    assert panel.runtime == "pytorch_eager"
    assert [(p.label, p.score, p.faces_per_s) for p in panel.points] == [
        ("a", pytest.approx(0.35), 200.0),
        ("b", 0.50, 50.0),
    ]
    assert panel.pareto == ["b", "a"]  # a trade-off: both on the front, in order of speed
    assert (
        panel.sentence
        == "a is 4.0× faster and 4.0× smaller than b, but 15.0 points less accurate (accuracy 0.350 vs 0.500)."
    )
    assert tradeoff_panels({"runs": [{k: v for k, v in runs[0].items() if k != "efficiency"}]}) == []


def test_pareto_front_by_hand() -> None:
    p = [
        TradeoffPoint("slow-best", 0.5, 10, 1, 1),
        TradeoffPoint("mid", 0.4, 50, 1, 1),
        TradeoffPoint("dominated", 0.35, 40, 1, 1),
        TradeoffPoint("fast", 0.2, 90, 1, 1),
        TradeoffPoint("tie-fast-worse", 0.1, 90, 1, 1),
    ]
    assert [q.label for q in pareto_front(p)] == ["slow-best", "mid", "fast"]
    sentence = tradeoff_sentence(p, "accuracy")
    assert sentence.startswith("fast is 9.0× faster than slow-best at the same size, but 30.0 points less accurate")
    assert sentence.endswith("on the Pareto front (no model beats them on both axes): slow-best, mid, fast.")
    assert tradeoff_sentence(p[:1], "accuracy") == "Only slow-best was measured."


def test_plot_writes_a_png_from_plain_data(tmp_path: Path) -> None:
    out = plot_tradeoff(tradeoff_panels(SUMMARY), tmp_path / "t.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_tradeoff([], tmp_path / "empty.png").is_file()


@pytest.mark.slow
def test_study_report_has_table_figure_and_analysis(demo_data: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from affectlab.config import RunConfig
    from affectlab.studies import run_study

    base = RunConfig()
    base = replace(
        base,
        data=replace(base.data, path=str(demo_data)),
        model=replace(base.model, weights="none", input_size=32),
        train=replace(base.train, epochs=1),
        study=replace(base.study, backbones=["resnet18"]),
    )
    summary = run_study(base, tmp_path / "s", progress=False).to_dict()
    runs = {r["task"]: r for r in summary["runs"]}
    stored = {p["task"]: p for p in summary["tradeoff"]}
    (point,) = stored["classification"]["points"]
    eff = runs["classification"]["efficiency"]
    assert point["score"] == runs["classification"]["metrics"]["classification"]["accuracy"]
    assert point["faces_per_s"] == eff["speed"]["onnxruntime"]["batch32"]["faces_per_s"]
    assert point["size_mb"] == eff["checkpoint_mb"] and point["params"] == eff["params"]["total"]
    (point,) = stored["regression"]["points"]
    m = runs["regression"]["metrics"]
    assert point["score"] == pytest.approx((m["valence"]["ccc"] + m["arousal"]["ccc"]) / 2)
    for r in runs.values():
        assert (tmp_path / "s" / r["name"] / "model.onnx").stat().st_size / 1e6 == pytest.approx(
            r["efficiency"]["onnx_mb"], abs=0.01
        )
        assert r["wall_seconds"] >= r["efficiency"]["seconds"]
    md = (tmp_path / "s" / "report.md").read_text()
    for text in (
        "## Size, speed and accuracy",
        "| resnet18_classification | acc ",
        "![accuracy and CCC",
        "## What the models get wrong",
        "### resnet18_classification: what it confuses",
        "Lowest recall:",
        "### resnet18_regression: where the valence/arousal error lies",
        "| V- A- | sad, bored |",
        "Bias is mean predicted − mean true",
        "## Robustness: the test split under camera damage",
        "| jpeg | quality 50, quality 25, quality 10 |",
        "resnet18_classification: Under 9 damages x 3 severities",
        "![resnet18_classification robustness](resnet18_classification/robustness.png)",
    ):
        assert text in md, text
    for r in runs.values():
        section = r["metrics"]["robustness"]
        assert len(section["results"]) == 27 and (tmp_path / "s" / r["name"] / "robustness.png").is_file()
    (entry,) = [a for a in summary["aggregate"] if a["task"] == "classification"]
    accuracy_relative = runs["classification"]["metrics"]["robustness"]["accuracy_relative"]
    assert entry["robustness.accuracy_relative"]["mean"] == accuracy_relative
    assert (tmp_path / "s" / "tradeoff.png").is_file()
    html = (tmp_path / "s" / "report.html").read_text()
    assert "<h3>resnet18_classification: what it confuses</h3>" in html and "alt='accuracy and CCC" in html
