"""Video input: real decoding of generated videos, per-frame records, --every, --smooth, annotated video, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from inference_support import demo_faces, one_torch_thread, scene, write_video

import affectlab
from affectlab.cli import main
from affectlab.inference.results import FaceResult, ImageResult
from affectlab.inference.tracking import FaceTracker
from affectlab.inference.video import Smoother, iter_video

FPS = 10.0
N_FRAMES = 24

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def frames(work: Path) -> list[np.ndarray]:
    """A face sliding right across a 320x240 frame, with per-frame sensor noise (so raw predictions jitter)."""
    face = cv2.resize(demo_faces(work)[0], (120, 120))
    rng = np.random.default_rng(0)
    out = []
    for i in range(N_FRAMES):
        frame = scene([face], [(30 + 5 * i, 60)], size=(240, 320)).astype(np.int16)
        out.append(np.clip(frame + rng.normal(0, 12, frame.shape), 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module", params=[".mp4", ".avi"])
def video(request: pytest.FixtureRequest, work: Path, frames: list[np.ndarray]) -> Path:
    return write_video(work / f"clip{request.param}", frames, FPS)


def test_frames_decode_in_order_with_timestamps(video: Path) -> None:
    items = list(iter_video(video))
    assert [i.frame for i in items] == list(range(N_FRAMES))
    assert [i.time_s for i in items] == pytest.approx([i / FPS for i in range(N_FRAMES)])
    assert items[0].image is not None and items[0].image.shape == (240, 320, 3) and items[0].error is None
    every = list(iter_video(video, every=5))
    assert [i.frame for i in every] == [0, 5, 10, 15, 20]
    np.testing.assert_array_equal(every[1].image, items[5].image)  # grabbed frames are skipped, not shifted


def test_cli_predicts_every_frame_and_writes_an_annotated_video(run: Path, video: Path, tmp_path: Path) -> None:
    out, annotated = tmp_path / "frames.jsonl", tmp_path / "annotated"
    assert main(["predict", str(run), str(video), "--out", str(out), "--save-annotated", str(annotated),
                 "--batch-size", "8", "--quiet"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(N_FRAMES))  # one face per frame
    assert [r["time_s"] for r in records] == pytest.approx([i / FPS for i in range(N_FRAMES)])
    xs = [r["box"][0] for r in records]
    assert all(r["face"] == 0 and r["label"] for r in records) and xs[-1] - xs[0] > 80  # the box follows the face
    written = annotated / video.name
    cap = cv2.VideoCapture(str(written))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == N_FRAMES
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    ok, first = cap.read()
    cap.release()
    assert ok and first.shape == (240, 320, 3)
    assert not list(annotated.glob(".*"))  # no temporary file left behind


def test_every_processes_every_nth_frame(run: Path, video: Path, tmp_path: Path) -> None:
    out = tmp_path / "every.csv"
    assert main(["predict", str(run), str(video), "--every", "4", "--out", str(out), "--quiet"]) == 0
    rows = out.read_text().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == [0, 4, 8, 12, 16, 20]


def test_smoothing_averages_over_the_window(run: Path, video: Path, tmp_path: Path) -> None:
    def series(*extra: str) -> np.ndarray:
        out = tmp_path / f"s{len(extra)}.jsonl"
        assert main(["predict", str(run), str(video), "--out", str(out), "--quiet", *extra]) == 0
        records = [json.loads(line) for line in out.read_text().splitlines()]
        return np.array([[*r["probs"].values(), r["valence"], r["arousal"]] for r in records])

    raw, smooth = series(), series("--smooth", "4")
    np.testing.assert_allclose(smooth[:1], raw[:1], atol=1e-5)
    np.testing.assert_allclose(smooth[10], raw[7:11].mean(0), atol=1e-5)  # the last 4 frames
    assert np.abs(np.diff(smooth, axis=0)).mean() < 0.6 * np.abs(np.diff(raw, axis=0)).mean()


def test_smoother_keeps_two_faces_apart() -> None:
    tracker, smoother = FaceTracker(), Smoother(3)

    def frame(*faces: tuple[int, float]) -> ImageResult:
        return smoother(tracker(ImageResult("v", [FaceResult((x, 50, 40, 40), None, v, -v) for x, v in faces])))

    frame((10, 1.0), (200, -1.0))
    out = frame((205, 0.0), (12, 0.0))  # listed in the other order, each moved a little
    assert [f.valence for f in out] == pytest.approx([-0.5, 0.5]) and [f.track_id for f in out] == [1, 0]
    out = frame((400, 1.0))  # far from both tracks: a new track, not averaged
    assert out[0].valence == pytest.approx(1.0) and out[0].track_id == 2


def test_broken_videos_give_error_records_and_the_rest_carries_on(run: Path, video: Path, work: Path,
                                                                  tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    avi = write_video(tmp_path / "whole.avi", [np.full((120, 160, 3), i * 10, np.uint8) for i in range(20)])
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
    out = tmp_path / "mixed.jsonl"
    code = main(["predict", str(run), str(garbage), str(truncated), str(video), "--out", str(out), "--quiet"])
    assert code == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    errors = {Path(r["source"]).name: r["error"] for r in records if r["error"]}
    assert "cannot open video" in errors["garbage.mp4"]
    assert "video ended after" in errors["truncated.avi"] and "of 20 frames" in errors["truncated.avi"]
    assert sum(Path(r["source"]) == video for r in records) == N_FRAMES


def test_predictor_streams_a_video_through_the_python_api(run: Path, video: Path) -> None:
    predictor = affectlab.load(run, batch_size=5)
    results = list(predictor.predict_stream(iter_video(video, every=3)))
    assert [r.frame for r in results] == list(range(0, N_FRAMES, 3)) and all(len(r) == 1 for r in results)
