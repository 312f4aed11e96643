"""Several datasets in one run (data.sources): masked labels, balanced sources, per-source splits and scores."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.data import write_affectnet, write_class_folders

from affectlab.cli.main import main
from affectlab.config import DataConfig, SourceConfig, TrainConfig, load_recipe, resolve_config
from affectlab.data.dataset import open_dataset
from affectlab.data.face_tensors import shuffled_loader
from affectlab.data.multi_source import SourceInfo, SourcesData
from affectlab.data.prepared import prepare_data
from affectlab.data.split import load_split
from affectlab.errors import AffectlabError
from affectlab.labels import EMOTIONS
from affectlab.training.losses import AffectLoss, masked_cross_entropy
from affectlab.training.source_mix import class_mask_table, source_draw_weights

CONTEMPT = EMOTIONS.index("Contempt")
FER_CLASSES = {"angry": 4, "disgust": 4, "fear": 4, "happy": 4, "neutral": 4, "sad": 4, "surprise": 4}


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An AffectNet-layout source (8 classes, V/A, 32 px colour) and a FER-like one (7 folders, 24 px grey)."""
    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    rows = [(str(i), i % 8, *np.round(rng.uniform(-1, 1, 2), 3)) for i in range(40)]
    affectnet = write_affectnet(root / "an", rows, size=32)
    fer = write_class_folders(root / "fer", FER_CLASSES, size=24)
    for copy in range(2):  # byte-identical copies, as FER-2013 has: they must stay in one split
        shutil.copy(fer / "happy" / "0.png", fer / "happy" / f"copy{copy}.png")
    return affectnet, fer


def _loss(label_smoothing: float = 0.1, va_loss: str = "mse+ccc") -> AffectLoss:
    infos = [SourceInfo("an", "an"), SourceInfo("fer", "fer", classes=tuple(range(7)), has_va=False)]
    weights = torch.tensor([[1.0] * 8, [0.5, 2.0, 1.0, 1.5, 1.0, 3.0, 1.0, 1.0]])
    cfg = TrainConfig(label_smoothing=label_smoothing, va_loss=va_loss)  # type: ignore[arg-type]
    return AffectLoss(cfg, weights, class_mask_table(infos))


def test_a_source_without_a_class_gives_no_gradient_towards_or_against_it() -> None:
    torch.manual_seed(0)
    logits = torch.randn(12, 8, requires_grad=True)
    expression = torch.randint(0, 7, (12,))
    source = torch.tensor([0] * 6 + [1] * 6)
    loss = _loss()({"expression": logits}, expression, torch.zeros(12, 2), source)
    loss.backward()
    assert logits.grad is not None
    fer_rows, affectnet_rows = logits.grad[6:], logits.grad[:6]
    assert torch.all(fer_rows[:, CONTEMPT] == 0), "FER faces pushed the Contempt logit"
    assert torch.all(affectnet_rows[:, CONTEMPT] != 0), "AffectNet faces must still teach Contempt"
    assert torch.all(fer_rows[:, :CONTEMPT].abs().sum(1) > 0)
    # Raising the absent logit changes nothing for FER faces: it is outside their softmax.
    with torch.no_grad():
        fer_only = _loss()({"expression": logits[6:]}, expression[6:], torch.zeros(6, 2), source[6:])
        shifted = logits[6:].clone()
        shifted[:, CONTEMPT] += 50.0
        assert _loss()({"expression": shifted}, expression[6:], torch.zeros(6, 2), source[6:]) == fer_only


def test_masked_cross_entropy_equals_pytorch_when_nothing_is_masked() -> None:
    torch.manual_seed(1)
    logits, target = torch.randn(32, 8, dtype=torch.float64), torch.randint(0, 8, (32,))
    weight = torch.rand(8, dtype=torch.float64) + 0.5
    for smoothing in (0.0, 0.1):
        expected = F.cross_entropy(logits, target, weight=weight, label_smoothing=smoothing)
        full = torch.ones(32, 8, dtype=torch.bool)
        got = masked_cross_entropy(logits, target, full, weight.expand(32, 8), smoothing)
        torch.testing.assert_close(got, expected)


def test_a_source_without_va_adds_nothing_to_the_va_loss() -> None:
    torch.manual_seed(2)
    va_pred = torch.randn(10, 2, requires_grad=True)
    va_true = torch.rand(10, 2) * 2 - 1
    va_true[6:] = float("nan")  # the FER faces: no valence/arousal
    source = torch.tensor([0] * 6 + [1] * 4)
    loss = _loss()({"va": va_pred}, torch.full((10,), -1), va_true, source)
    loss.backward()
    assert va_pred.grad is not None and torch.isfinite(loss)
    assert torch.all(va_pred.grad[6:] == 0) and torch.all(va_pred.grad[:6].abs().sum(1) > 0)
    alone = _loss()({"va": va_pred[:6]}, torch.full((6,), -1), va_true[:6], source[:6])
    torch.testing.assert_close(loss, alone)
    none = _loss()({"va": va_pred[6:]}, torch.full((4,), -1), va_true[6:], source[6:])
    assert none.item() == 0.0


@pytest.mark.parametrize(("weights", "expected"), [((1.0, 1.0), 0.5), ((3.0, 1.0), 0.75)])
def test_the_sampler_draws_sources_in_the_stated_proportions(weights: tuple[float, float], expected: float) -> None:
    infos = [SourceInfo("small", "a", weight=weights[0]), SourceInfo("large", "b", weight=weights[1])]
    source = np.array([0] * 40 + [1] * 400)
    expression = np.array([0] * 30 + [1] * 10 + [0] * 100 + [1] * 300)
    p = source_draw_weights(infos, source, expression, class_balanced=False)
    index = torch.utils.data.TensorDataset(torch.arange(len(source)))
    draws = np.concatenate(
        [
            torch.cat([batch for (batch,) in shuffled_loader(index, 64, 0, torch.Generator().manual_seed(s), p)])
            for s in range(20)
        ]
    )
    assert len(draws) == 20 * len(source), "an epoch makes as many draws as there are training samples"
    share = np.mean(source[draws] == 0)
    assert share == pytest.approx(expected, abs=0.02), "a source's share of the draws is its weight's share"
    # Exact probabilities: class-balanced inside each source too, when asked.
    p = source_draw_weights(infos, source, expression, class_balanced=True)
    assert p.sum() == pytest.approx(1.0)
    assert p[source == 0].sum() == pytest.approx(expected)
    small = p[:40]
    assert small[expression[:40] == 0].sum() == pytest.approx(small[expression[:40] == 1].sum())


def test_splits_are_drawn_per_source_duplicate_aware_and_saved(two_sources: tuple[Path, Path], tmp_path: Path) -> None:
    affectnet, fer = two_sources
    cfg = DataConfig(sources=[SourceConfig(str(affectnet)), SourceConfig(str(fer))], split_seed=3)
    data = open_dataset(cfg, 32)
    assert isinstance(data, SourcesData)
    split = data.assignment
    assert set(split["sources"]) == {"an", "fer"} and split["sources"]["fer"]["path"] == str(fer)
    for name, path in (("an", affectnet), ("fer", fer)):
        alone = prepare_data(DataConfig(path=str(path), split_seed=3), 32).assignment
        assert all(split["sources"][name][s] == alone[s] for s in ("train", "val", "test")), (
            "not the source's own split"
        )
    copies = {"happy/0.png", "happy/copy0.png", "happy/copy1.png"}
    homes = [s for s in ("train", "val", "test") if copies & set(split["sources"]["fer"][s])]
    assert len(homes) == 1 and copies <= set(split["sources"]["fer"][homes[0]]), "copies crossed splits"
    assert split["duplicate_images_grouped"] == 2
    test = data.splits["test"]
    for index, name in enumerate(("an", "fer")):
        ids = [i for i, s in zip(test.ids, test.source, strict=True) if s == index]
        assert ids and all(i.startswith(f"{name}/") for i in ids)
    # What each source labels: FER names 7 classes and has no V/A; AffectNet all 8 with V/A.
    an, fer_info = data.infos
    assert an.has_va and len(an.classes) == 8
    assert not fer_info.has_va and fer_info.missing_classes == ["Contempt"]
    assert np.isnan(data.splits["train"].va[data.splits["train"].source == 1]).all()
    # split.json round trip: the saved split is reused as it is.
    (tmp_path / "split.json").write_text(json.dumps(split), encoding="utf-8")
    again = open_dataset(DataConfig(sources=cfg.sources, split_file=str(tmp_path / "split.json")), 32)
    assert again.splits["test"].ids == test.ids
    assert load_split(tmp_path / "split.json")["sources"]["an"]["counts"] == split["sources"]["an"]["counts"]


def test_sources_of_different_size_and_channels_are_named_in_one_line(
    two_sources: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    affectnet, fer = two_sources
    with caplog.at_level(logging.WARNING, logger="affectlab.data.sources"):
        data = open_dataset(DataConfig(sources=[SourceConfig(str(affectnet)), SourceConfig(str(fer))]), 40)
    lines = [r.getMessage() for r in caplog.records if "differ" in r.getMessage()]
    assert lines == [
        (
            "sources differ in image size or channels (an 32x32 RGB, fer 24x24 grey, first image of each); every "
            "face is decoded to RGB (grey replicated to 3 channels) and resized to 40 px"
        )
    ]
    assert data.splits["train"].images.shape[1:] == (40, 40, 3)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"class_map": {"angry": "Angry"}},
            "data.sources[1] (fer): class_map names unknown class(es) Angry; affectlab's classes are Neutral, Happy",
        ),
        ({"tasks": []}, "data.sources[1] (fer): labels no task (tasks is empty); list expression, va or both"),
        ({"weight": 0}, "data.sources[1] (fer): weight=0 must be above 0"),
        ({"colour": "grey"}, "data.sources[1]: unknown option(s) colour; known: path, name, layout"),
    ],
)
def test_bad_source_settings_are_one_line(two_sources: tuple[Path, Path], source: dict, message: str) -> None:
    affectnet, fer = two_sources
    with pytest.raises(AffectlabError, match="^" + re.escape("command line: " + message)):
        resolve_config("best", {"data.sources": [str(affectnet), {"path": str(fer), **source}]})


def test_a_source_labelling_no_task_of_the_model_is_one_line(two_sources: tuple[Path, Path]) -> None:
    affectnet, fer = two_sources
    with pytest.raises(
        AffectlabError, match=r"^data.sources \(fer\): tasks lists va, but .*fer has no valence/arousal$"
    ):
        open_dataset(DataConfig(sources=[SourceConfig(str(affectnet)), SourceConfig(str(fer), tasks=["va"])]), 32)
    from affectlab.training.source_mix import check_sources_label

    infos = [SourceInfo("an", "an"), SourceInfo("fer", "fer", classes=tuple(range(7)), has_va=False)]
    with pytest.raises(AffectlabError, match=r"^data.sources \(fer\): labels no task of model.task=regression"):
        check_sources_label(infos, has_expression=False, has_va=True, task="regression")


def test_repeated_data_flags_and_the_api_list_name_every_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from affectlab.api import _with_data
    from affectlab.cli.main import _flag_overrides, build_parser

    args = build_parser().parse_args(["train", "--data", "A", "--data", "B/fer", "--out", "x"])
    cfg = resolve_config("best", _flag_overrides(args))
    assert [s.label for s in cfg.data.sources] == ["A", "fer"] and cfg.data.path == "A"
    assert resolve_config("best", _with_data(["A", "B/fer"], {})).data == cfg.data
    one = resolve_config("best", _flag_overrides(build_parser().parse_args(["train", "--data", "A", "--out", "x"])))
    assert one.data.sources == [] and one.data.path == "A" and one.data.source_configs()[0].path == "A"
    study_args = ["study", "--data", "A", "--data", "B/fer", "--source-sets", "A;fer;A,fer", "--out", "x"]
    grid = resolve_config("best", _flag_overrides(build_parser().parse_args(study_args)))
    assert grid.study.source_sets == [["A"], ["fer"], ["A", "fer"]]
    # A config.yaml written before sources existed still loads, as one source.
    old = tmp_path / "config.yaml"
    old.write_text("data:\n  path: A\n  layout: auto\nmodel:\n  task: multitask\n", encoding="utf-8")
    assert load_recipe(old).data.sources == []
    code = main(["train", "--data", "A", "--data", "B", "--layout", "folders", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "affectlab: error: --layout with several --data: each source has its own; list them under data.sources in a recipe"
    ]


@pytest.mark.slow
def test_train_on_two_sources_writes_per_source_metrics_and_evaluate_repeats_them(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    import csv

    import affectlab

    affectnet, fer = two_sources
    out = tmp_path / "run"
    run = affectlab.train(
        data=[str(affectnet), str(fer)],
        out=out,
        progress=False,
        backbone="mobilenet_v2",
        weights="none",
        task="multitask",
        epochs=2,
        input_size=32,
        batch_size=16,
    )
    assert run is not None
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"] == "an" and set(metrics["sources"]) == {"an", "fer"}
    fer_scores = metrics["sources"]["fer"]
    assert fer_scores["in_domain"] and "valence" not in fer_scores and fer_scores["n"] > 0
    assert fer_scores["classification_shared"]["classes"] == list(EMOTIONS[:7])
    assert "valence" in metrics["sources"]["an"]
    with (out / "history.csv").open() as handle:
        header = next(csv.reader(handle))
    assert {"val_score/an", "val_score/fer", "val_score/combined", "val_accuracy/fer"} <= set(header)
    assert set(json.loads((out / "split.json").read_text())["sources"]) == {"an", "fer"}
    assert [s["path"] for s in load_recipe(out / "config.yaml").to_dict()["data"]["sources"]] == [
        str(affectnet),
        str(fer),
    ]
    assert set(json.loads((out / "run.json").read_text())["data"]["sources"]) == {"an", "fer"}
    again = affectlab.evaluate(out, out=tmp_path / "eval")
    for name in ("an", "fer"):
        assert again.document["sources"][name]["classification"]["accuracy"] == pytest.approx(
            metrics["sources"][name]["classification"]["accuracy"]
        )


def test_cross_dataset_table_has_a_row_per_model_a_column_per_source_and_marks_in_domain_cells() -> None:
    from affectlab.evaluation.trust import confidence_metrics, confidence_section, set_metrics
    from affectlab.models.meta import Calibration
    from affectlab.reports.cross_dataset import cross_dataset_table

    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, 200)
    cal = Calibration(temperature=1.5, coverage=0.9, set_threshold=0.8, n=100)

    def confidence(shift: float) -> tuple[dict, float, float]:
        """A confidence section of synthetic outputs, and its ECE and set coverage by the trust functions."""
        logits = rng.normal(0, 1, (200, 8))
        logits[np.arange(200), y] += shift
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        sets = probs >= np.sort(probs, axis=1)[:, [-3]]  # the three most probable classes
        outputs = {"probs": probs, "set": sets}
        section = confidence_section(outputs, outputs, y, None, cal)
        return section, confidence_metrics(y, probs)["ece"], set_metrics(y, sets)["coverage"]

    sections = [confidence(shift) for shift in (0.5, 1.0, 2.0, 3.0)]

    def run(trained_on: list[str], seed: int, an: float, fer: float) -> dict:
        def document(name: str, accuracy: float) -> dict:
            return {
                "classification": {"accuracy": accuracy},
                "classification_shared": {"accuracy": accuracy + 0.1},
                "in_domain": name in trained_on,
                "confidence": sections[seed + (name == "fer")][0],
            }

        metrics = {"sources": {"an": document("an", an), "fer": document("fer", fer)}, "shared_classes": ["Neutral"]}
        common = {"backbone": "mobilenet_v2", "task": "multitask", "weights": "imagenet", "seed": seed}
        return {**common, "trained_on": trained_on, "metrics": metrics}

    runs = [
        {**run(["an"], 0, 0.5, 0.3), "machine": {"threads": 4}},
        {**run(["an"], 1, 0.6, 0.3), "machine": {"threads": 4}},
        run(["fer"], 0, 0.2, 0.6),
        run(["an", "fer"], 0, 0.5, 0.6),
    ]
    table = cross_dataset_table(runs)
    assert table is not None
    header, rows, shared = table
    assert header[-4:] == ["an test", "an ECE / set coverage", "fer test", "fer ECE / set coverage"]
    assert shared == ["Neutral"]
    assert [row[3] for row in rows] == ["an", "fer", "an + fer"]
    sd = f"{np.std([0.5, 0.6], ddof=1):.3f}"  # the sample SD over seeds (reports.run_groups)
    assert [rows[0][i] for i in (4, 5, 6, 8)] == [
        "2",
        "4",
        f"0.550 ± {sd} / 0.650 ± {sd} *",
        "0.300 ± 0.000 / 0.400 ± 0.000",
    ]
    assert rows[1][5] == "unknown" and header[4:7] == ["seeds", "threads", "an test"]
    assert rows[1][-4::2] == ["0.200 / 0.300", "0.600 / 0.700 *"]
    assert rows[2][-4::2] == ["0.500 / 0.600 *", "0.600 / 0.700 *"]
    # ECE and set coverage: the trust functions' values on the same outputs (a mean over the two seeds)
    _, ece_fer, coverage_fer = sections[1]
    assert rows[1][-1] == f"{ece_fer:.3f} / {coverage_fer:.3f}"
    ece_an = np.mean([sections[0][1], sections[1][1]])
    coverage_an = np.mean([sections[0][2], sections[1][2]])
    assert rows[0][7] == f"{ece_an:.3f} / {coverage_an:.3f}"
    old = [{**r, "metrics": {**r["metrics"], "sources": {k: {**d, "confidence": None}
                                                          for k, d in r["metrics"]["sources"].items()}}} for r in runs]  # fmt: skip
    assert cross_dataset_table(old)[1][0][7] == "- / -"  # type: ignore[index]  # runs scored before confidence
    assert cross_dataset_table([{**runs[0], "metrics": {"classification": {"accuracy": 0.5}}}]) is None
    # a group (another recipe on the same sources) gets a row of its own, named in the trained-on cell
    grouped = cross_dataset_table([*runs[:2], {**run(["an"], 0, 0.1, 0.1), "group": "camera"}])
    assert grouped is not None
    assert [(row[3], row[4]) for row in grouped[1]] == [("an", "2"), ("an (camera)", "1")]
    assert grouped[1][1][6] == "0.100 / 0.200 *"


def test_sources_set_over_a_recipes_sources_replace_them_and_name_the_first_as_data_path() -> None:
    # The docs' own command: the bundled recipe's two sources replaced by --set, paths written differently
    cfg = resolve_config("bundled", sets=["data.sources=[{path: /data/an}, {path: /data/fp, per_epoch: 4400}]"])
    assert cfg.data.path == "/data/an"
    assert [(s.path, s.per_epoch) for s in cfg.data.sources] == [("/data/an", None), ("/data/fp", 4400)]
    with pytest.raises(AffectlabError, match="data.path and data.sources both given"):
        resolve_config("bundled", sets=["data.path=/elsewhere", "data.sources=[{path: /data/an}]"])
