"""`affectlab serve`: a real uvicorn server in a subprocess on 127.0.0.1, queried over real HTTP with httpx."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import pytest
from support.models import demo_faces, make_run, no_face_image, one_torch_thread, scene, serving

from affectlab.labels import EMOTIONS

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def server(work: Path) -> Iterator[str]:
    """``affectlab serve RUN`` started as a user would; yields its base URL and stops it afterwards."""
    with serving([str(make_run(work)), "--threads", "1"], work / "server.log") as url:
        yield url


def _png(image) -> bytes:  # type: ignore[no-untyped-def]
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def test_health_describes_the_model(server: str) -> None:
    body = httpx.get(f"{server}/health").json()
    auto = "yuface" if importlib.util.find_spec("yuface") else "haar"  # the default detector, resolved
    assert body["status"] == "ok" and body["detector"] == auto and body["model"]["tta_flip"] is False
    assert body["model"]["task"] == "multitask" and body["model"]["class_names"] == list(EMOTIONS)
    assert (
        body["model"]["preprocess"]["input_size"] == 64 and body["model"]["runtime"] == "onnxruntime"
    )  # a run folder: its ONNX export


def test_predict_returns_one_entry_per_face(server: str, work: Path) -> None:
    faces = demo_faces(work)
    image = scene([faces[0], faces[2]], [(40, 100), (400, 200)])
    response = httpx.post(f"{server}/predict", files={"file": ("two.png", _png(image), "image/png")})
    assert response.status_code == 200
    body = response.json()
    assert [f["face"] for f in body] == [0, 1]
    for face, (x, y) in zip(body, [(40, 100), (400, 200)]):
        bx, by, bw, bh = face["box"]
        assert x < bx + bw / 2 < x + 160 and y < by + bh / 2 < y + 160
        assert face["label"] in EMOTIONS and set(face["probs"]) == set(EMOTIONS)
        assert abs(sum(face["probs"].values()) - 1) < 1e-4 and isinstance(face["valence"], float)
    again = httpx.post(f"{server}/predict", files={"file": ("two.png", _png(image), "image/png")}).json()
    assert again == body  # same model, loaded once, deterministic
    lines = [json.loads(line) for line in (work / "server.log").read_text().splitlines() if line.startswith("{")]
    logged = [line for line in lines if line["path"] == "/predict"]  # one JSON line per request
    assert len(logged) >= 2 and all(line["status"] == 200 and line["faces"] == 2 for line in logged[-2:])
    assert {"ts", "method", "ms", "client"} <= set(logged[-1]) and logged[-1]["method"] == "POST"


def test_no_face_and_bad_uploads(server: str) -> None:
    empty = httpx.post(f"{server}/predict", files={"file": ("empty.png", _png(no_face_image()), "image/png")})
    assert empty.status_code == 200 and empty.json() == []
    bad = httpx.post(f"{server}/predict", files={"file": ("bad.jpg", b"not an image", "image/jpeg")})
    assert bad.status_code == 400 and "bad.jpg: not a readable image" in bad.json()["detail"]
    missing = httpx.post(f"{server}/predict")
    assert missing.status_code == 415  # no multipart form at all


def test_serve_with_a_missing_model_fails_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "affectlab.cli", "serve", str(tmp_path / "none.onnx")],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"affectlab: error: {tmp_path / 'none.onnx'}: model not found"]
