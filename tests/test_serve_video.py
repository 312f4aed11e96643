"""``POST /predict/video`` (NDJSON records streamed as frames are done, bounded by the video limits) and
``affectlab serve --workers 2``.

The videos are made here with OpenCV's VideoWriter: a demo face sliding across a textured canvas. The endpoint
runs in a real uvicorn server on 127.0.0.1; the workers test starts the real command.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from support.models import demo_faces, one_torch_thread, running, scene, serving, write_video

from affectlab.runtime.predictor import load
from affectlab.runtime.video import iter_video

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

FRAMES = 12


@pytest.fixture(scope="module")
def clip(work: Path) -> Path:
    face = cv2.resize(demo_faces(work, n_per_class=1)[3], (120, 120))
    frames = [scene([face], [(20 + 6 * i, 40 + 2 * i)], (240, 320)) for i in range(FRAMES)]
    return write_video(work / "slide.avi", frames)


def _post_video(url: str, path: Path, **params: int) -> httpx.Response:
    with path.open("rb") as stream:
        return httpx.post(
            f"{url}/predict/video", files={"file": (path.name, stream, "video/x-msvideo")}, params=params, timeout=600
        )


def test_video_records_stream_in_frame_order_with_tracks(run: Path, clip: Path) -> None:
    reference = load(run, detector="none")  # the same model on the same decoded frames, no server
    expected = [reference.predict(item.image) for item in iter_video(clip)]
    with (
        running(load(run, detector="none")) as url,
        httpx.stream(
            "POST",
            f"{url}/predict/video",
            files={"file": (clip.name, clip.read_bytes(), "video/x-msvideo")},
            timeout=600,
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        assert "content-length" not in response.headers  # streamed, not sent as one body
        records = [json.loads(line) for line in response.iter_lines() if line]
    assert [r["frame"] for r in records] == list(range(FRAMES))
    assert [r["time_s"] for r in records] == pytest.approx([i / 10 for i in range(FRAMES)])
    for record, want in zip(records, expected):
        (face,) = want
        assert record["source"] == "slide.avi" and record["track_id"] == 0 and record["error"] is None
        assert record["label"] == face.label
        assert record["probs"] == pytest.approx(face.to_dict()["probs"], abs=1e-5)
        assert record["valence"] == pytest.approx(face.valence, abs=1e-5)


def test_every_and_smooth_are_applied(run: Path, clip: Path) -> None:
    with running(load(run, detector="none")) as url:
        plain = [json.loads(x) for x in _post_video(url, clip, every=3).text.splitlines()]
        smooth = [json.loads(x) for x in _post_video(url, clip, every=3, smooth=4).text.splitlines()]
        assert _post_video(url, clip, every=0).status_code == 400
    assert [r["frame"] for r in plain] == [0, 3, 6, 9]
    assert smooth[0]["valence"] == pytest.approx(plain[0]["valence"], abs=1e-6)  # nothing to average yet
    assert smooth[-1]["valence"] == pytest.approx(np.mean([r["valence"] for r in plain]), abs=1e-5)


def test_video_limits_answer_one_clear_4xx_line(run: Path, clip: Path, work: Path) -> None:
    corrupt = work / "broken.mp4"
    corrupt.write_bytes(b"not a video at all" * 100)
    limits = {"max_video_frames": FRAMES - 1, "max_video_bytes": 4 * 1024 * 1024}
    with running(load(run, detector="none"), **limits) as url:
        frames = _post_video(url, clip)
        assert frames.status_code == 413
        assert (
            frames.json()["detail"]
            == f"slide.avi: video has {FRAMES} frames at 10 fps, more than 11 frames (the limit)"
        )
        assert _post_video(url, corrupt).status_code == 400
        assert "broken.mp4: cannot open video" in _post_video(url, corrupt).json()["detail"]
    with running(load(run, detector="none"), max_video_s=0.5) as url:
        seconds = _post_video(url, clip)
        assert seconds.status_code == 413 and "longer than 0.5 s (the limit)" in seconds.json()["detail"]
    with running(load(run, detector="none"), max_video_bytes=1000) as url:
        assert _post_video(url, clip).status_code == 413


def test_two_workers_start_and_answer(run: Path, clip: Path, work: Path) -> None:
    log = work / "workers.log"
    image = cv2.imencode(".png", cv2.resize(demo_faces(work / "w", n_per_class=1)[0], (96, 96)))[1].tobytes()
    with serving([str(run), "--detector", "none", "--workers", "2"], log) as url:
        answers = [httpx.post(f"{url}/predict", files={"file": ("a.png", image)}, timeout=300) for _ in range(6)]
        video = _post_video(url, clip)
        page = httpx.get(f"{url}/")
    assert [a.status_code for a in answers] == [200] * 6
    assert len({json.dumps(a.json()) for a in answers}) == 1  # every worker has the same model
    assert video.status_code == 200 and len(video.text.splitlines()) == FRAMES
    assert "--workers 1 only" in page.json()["detail"]
    assert log.read_text().count("Started server process") == 2
