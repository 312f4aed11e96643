"""Prediction sets, V/A intervals and ``--min-confidence`` in every record: Python results, JSONL, CSV, the
annotated image and the HTTP service."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from support.models import INPUT_SIZE, make_run, one_torch_thread, serving

import affectlab
from affectlab.cli import main
from affectlab.errors import AffectlabError
from affectlab.labels import EMOTIONS
from affectlab.models.checkpoint import save_calibration
from affectlab.models.meta import Calibration
from affectlab.runtime.annotate import draw_result
from affectlab.runtime.results import CSV_COLUMNS, UNCERTAIN

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

#: The CSV columns before sets and intervals existed: they keep their positions.
OLD_COLUMNS = ("source", "frame", "time_s", "face", "track_id", "x", "y", "w", "h", "label", "confidence",
               *(f"p_{name}" for name in EMOTIONS), "valence", "arousal", "no_face", "error")  # fmt: skip


@pytest.fixture(scope="module")
def calibrated(work: Path) -> Path:
    run = make_run(work)
    save_calibration(run / "model.pt", Calibration(temperature=1.5, coverage=0.9, set_threshold=0.85,
                                                   va_halfwidth=(0.3, 0.25), n=50))  # fmt: skip
    return run


@pytest.fixture(scope="module")
def crops(work: Path) -> Path:
    folder = work / "crops"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8))
    return folder


def test_results_carry_sets_intervals_and_the_uncertain_label(calibrated: Path, crops: Path) -> None:
    images = sorted(crops.glob("*.png"))
    faces = [r[0] for r in affectlab.load(calibrated, detector="none").predict(images)]
    for face in faces:
        assert face.prediction_set is not None and face.prediction_set[0] == face.label  # most probable first
        assert face.valence_interval is not None and face.arousal_interval is not None
        low, high = face.valence_interval
        assert low <= face.valence <= high and high - low <= 0.6 + 1e-6
    assert max(len(f.prediction_set or ()) for f in faces) > 1
    threshold = float(np.median([f.confidence for f in faces]))
    strict = [r[0] for r in affectlab.load(calibrated, detector="none", min_confidence=threshold).predict(images)]
    for plain, face in zip(faces, strict):
        assert face.label == (UNCERTAIN if plain.confidence < threshold else plain.label)
        np.testing.assert_array_equal(face.probs, plain.probs)  # the probabilities are kept
    assert 0 < sum(f.label == UNCERTAIN for f in strict) < len(strict)
    record = strict[0].to_dict()
    assert set(record) >= {"prediction_set", "valence_interval", "arousal_interval"}
    assert record["prediction_set"] == list(strict[0].prediction_set or ())
    with pytest.raises(AffectlabError, match="between 0 and 1"):
        affectlab.load(calibrated, detector="none", min_confidence=1.5)


def test_an_uncalibrated_model_has_no_sets_or_intervals(work: Path, crops: Path) -> None:
    face = affectlab.load(make_run(work / "plain"), detector="none").predict(next(crops.glob("*.png")))[0]
    assert face.prediction_set is None and face.valence_interval is None and face.label in EMOTIONS
    assert face.to_dict()["prediction_set"] is None


def test_cli_csv_and_jsonl_records_with_min_confidence(
    calibrated: Path, crops: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.csv"
    argv = ["predict", str(calibrated), str(crops), "--detector", "none", "--min-confidence", "0.99"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "6 uncertain" in capsys.readouterr().err
    rows = list(csv.reader(out.read_text().splitlines()))
    assert tuple(rows[0]) == CSV_COLUMNS and CSV_COLUMNS[: len(OLD_COLUMNS)] == OLD_COLUMNS
    assert CSV_COLUMNS[len(OLD_COLUMNS) :] == ("prediction_set", "valence_low", "valence_high", "arousal_low",
                                               "arousal_high")  # fmt: skip
    for row in (dict(zip(rows[0], r)) for r in rows[1:]):
        assert row["label"] == UNCERTAIN and set(row["prediction_set"].split("|")) <= set(EMOTIONS)
        assert float(row["valence_low"]) <= float(row["valence"]) <= float(row["valence_high"])
    jsonl = tmp_path / "r.jsonl"
    assert main([*argv, "--out", str(jsonl), "--quiet"]) == 0
    record = json.loads(jsonl.read_text().splitlines()[0])
    assert record["label"] == UNCERTAIN and len(record["valence_interval"]) == 2 and record["prediction_set"]
    assert main([*argv[:-1], "2", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--min-confidence must be a probability between 0 and 1" in capsys.readouterr().err


def test_annotated_image_shows_a_set_of_more_than_one_emotion(calibrated: Path, crops: Path) -> None:
    predictor = affectlab.load(calibrated, detector="none")
    image = np.full((400, 400, 3), 90, np.uint8)
    result = predictor.predict(image)
    face = result[0]
    assert face.prediction_set is not None and len(face.prediction_set) > 1
    with_set = draw_result(image, result)
    face.prediction_set = face.prediction_set[:1]
    without = draw_result(image, result)
    assert (with_set != without).any()  # the set's line is drawn only for more than one emotion


def test_service_records_and_per_request_min_confidence(calibrated: Path, crops: Path, work: Path) -> None:
    data = cv2.imencode(".png", cv2.imread(str(next(crops.glob("*.png")))))[1].tobytes()
    with serving([str(calibrated), "--detector", "none", "--threads", "1", "--min-confidence", "0.999"],
                 work / "server.log", timeout_s=300) as url:  # fmt: skip
        files = {"file": ("a.png", data, "image/png")}
        face = httpx.post(f"{url}/predict", files=files).json()[0]
        assert face["label"] == UNCERTAIN and face["prediction_set"] and len(face["arousal_interval"]) == 2
        relaxed = httpx.post(f"{url}/predict?min_confidence=0", files=files).json()[0]
        assert relaxed["label"] in EMOTIONS and relaxed["probs"] == face["probs"]
        assert httpx.post(f"{url}/predict?min_confidence=2", files=files).status_code == 422
        health = httpx.get(f"{url}/health").json()
        assert health["model"]["confidence_calibration"]["temperature"] == 1.5
