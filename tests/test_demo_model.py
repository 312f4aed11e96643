"""A study on the demo data: its models' cards name their training data, its report's tables scroll in their box,
and a model trained on the drawn demo faces says so once wherever it is used (predict, serve, the page, the API)."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import cv2
import httpx
import pytest
import torch
from support.models import demo_faces, running

import affectlab
from affectlab.cli import main
from affectlab.export.model_card import model_card_markdown
from affectlab.runtime.backends import DEMO_MODEL_NOTE
from affectlab.serve.app import NOTE_HEADER
from affectlab.serve.page import _model_line

FAST = ["--weights", "none", "--no-freeze", "--input-size", "32", "--epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def demo_study(work: Path) -> Path:
    """``affectlab study --data demo`` (the built-in synthetic faces), one small model."""
    out = work / "demo-study"
    assert main(["study", "--data", "demo", "--tasks", "classification", "--out", str(out), *FAST]) == 0
    return out


@pytest.fixture(scope="module")
def photos(work: Path) -> list[Path]:
    paths = []
    for i, face in enumerate(demo_faces(work, n_per_class=1)[:2]):
        paths.append(work / f"photo{i}.png")
        cv2.imwrite(str(paths[-1]), face)
    return paths


def _card_data_line(run: Path) -> str:
    card = model_card_markdown(affectlab.load(run).info)
    return next(line for line in card.splitlines() if line.startswith("| Training data |"))


@pytest.mark.slow
def test_a_study_models_card_names_its_training_data(demo_study: Path, tmp_path: Path) -> None:
    run = demo_study / "resnet18_classification"
    line = _card_data_line(run)
    assert "not recorded" not in line and "path: demo-v1-" in line and "samples: 800" in line, line
    # A study made before its models had a run.json: the card reads the data from the study's summary.json.
    old = shutil.copytree(demo_study, tmp_path / "old-study")
    (old / "resnet18_classification" / "run.json").unlink()
    assert _card_data_line(old / "resnet18_classification") == line


@pytest.mark.slow
def test_report_tables_scroll_inside_their_box(demo_study: Path) -> None:
    html = (demo_study / "report.html").read_text()
    assert ".table-box{max-width:100%;overflow-x:auto" in html
    assert html.count("<table") >= 3
    assert html.count("<table") == html.count("<div class='table-box'><table")


@pytest.mark.slow
def test_a_demo_model_says_so_once_when_loaded(
    demo_study: Path, run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    demo_run = demo_study / "resnet18_classification"
    with caplog.at_level(logging.WARNING, logger="affectlab"):
        for model in (demo_run, demo_run / "model.onnx"):  # the study's ONNX file says it as well
            assert affectlab.load(model).info.note == DEMO_MODEL_NOTE
    assert [r.getMessage() for r in caplog.records] == [
        f"resnet18_classification: {DEMO_MODEL_NOTE}",
        f"model.onnx: {DEMO_MODEL_NOTE}",
    ]
    assert affectlab.load(run).info.note is None  # a model not trained on the demo data
    # A checkpoint saved before the demo data was recorded: its training config's data.path tells.
    bundle = torch.load(demo_run / "model.pt", map_location="cpu", weights_only=True)
    assert bundle["meta"].pop("demo_data") is True and bundle["meta"]["config"]["data"]["path"] == "demo"
    torch.save(bundle, tmp_path / "old.pt")
    assert affectlab.load(tmp_path / "old.pt").info.note == DEMO_MODEL_NOTE


@pytest.mark.slow
def test_predict_says_it_once_for_many_images(
    demo_study: Path, photos: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "r.jsonl"
    run = demo_study / "resnet18_classification"
    with caplog.at_level(logging.WARNING, logger="affectlab"):
        assert main(["predict", str(run), *map(str, photos), "--detector", "none", "--out", str(out), "--quiet"]) == 0
    assert sum(DEMO_MODEL_NOTE in r.getMessage() for r in caplog.records) == 1
    assert len(out.read_text().splitlines()) == 2


@pytest.mark.slow
def test_the_service_and_the_page_say_it(demo_study: Path, photos: list[Path]) -> None:
    predictor = affectlab.load(demo_study / "resnet18_classification", detector="none")
    assert re.search(
        r"\*\*Note: this model was trained on affectlab's synthetic demo faces", _model_line(predictor.info)
    )
    with running(predictor) as url:
        assert httpx.get(url + "/health", timeout=300).json()["model"]["note"] == DEMO_MODEL_NOTE
        with photos[0].open("rb") as stream:
            response = httpx.post(url + "/predict", files={"file": ("a.png", stream, "image/png")}, timeout=300)
        assert response.status_code == 200 and len(response.json()) == 1
        assert response.headers[NOTE_HEADER] == DEMO_MODEL_NOTE
    json.dumps(predictor.info.to_dict())  # the note is plain JSON as well
