"""Video input: real decoding of generated videos, per-frame records, --every, --smooth, annotated video, bad files."""

from __future__ import annotations

import io
import json
import signal
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from support.models import demo_faces, one_torch_thread, scene, write_video

import affectlab
from affectlab.cli import main
from affectlab.errors import AffectlabError
from affectlab.runtime import pipeline
from affectlab.runtime.pipeline import run_predictions
from affectlab.runtime.records import RecordWriter
from affectlab.runtime.results import FaceResult, ImageResult
from affectlab.runtime.settings import PredictConfig
from affectlab.runtime.sources import expand_inputs
from affectlab.runtime.tracking import FaceTracker
from affectlab.runtime.video import Smoother, iter_video

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
    assert (
        main(
            [
                "predict",
                str(run),
                str(video),
                "--out",
                str(out),
                "--save-annotated",
                str(annotated),
                "--batch-size",
                "8",
                "--quiet",
            ]
        )
        == 0
    )
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


def test_broken_videos_give_error_records_and_the_rest_carries_on(
    run: Path, video: Path, work: Path, tmp_path: Path
) -> None:
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


# ---------------------------------------------------------------------------------------------------------------
# Webcam loop (fed by a generated video, never a real camera) and Ctrl-C
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def camera_stand_in(work: Path, frames: list[np.ndarray]) -> Path:
    return write_video(work / "camera.avi", frames, FPS)


def _webcam_run(run: Path, camera_stand_in: Path, annotate: Path, on_item: Any = lambda: None) -> tuple[Any, list]:
    """``affectlab predict --webcam 0`` from the camera on: the same sources, loop and writers, with the capture of
    camera 0 opened on a generated video file instead of a device."""
    predictor = affectlab.load(run, batch_size=1)  # the CLI's batch size for a webcam
    sources = expand_inputs([], webcam=0)
    capture = cv2.VideoCapture(str(camera_stand_in))
    stream = io.StringIO()
    writer = RecordWriter(stream)

    def on_result(result: ImageResult) -> None:
        writer.write(result.records())
        on_item()

    summary = run_predictions(predictor, sources, on_result, PredictConfig(), annotate, {0: capture})
    assert not capture.isOpened()  # released at the end
    return summary, [json.loads(line) for line in stream.getvalue().splitlines()]


def test_webcam_frames_are_predicted_and_annotated(run: Path, camera_stand_in: Path, tmp_path: Path) -> None:
    summary, records = _webcam_run(run, camera_stand_in, tmp_path / "annotated")
    assert not summary.interrupted and summary.items == N_FRAMES
    assert {r["source"] for r in records} == {"webcam:0"} and [r["frame"] for r in records] == list(range(N_FRAMES))
    times = [r["time_s"] for r in records]
    assert times[0] >= 0 and times == sorted(times)  # seconds since the first frame, by the clock
    written = tmp_path / "annotated" / "webcam0.mp4"
    assert summary.annotated[:2] == [written, written.with_name("webcam0.tracks.json")]  # and a timeline per track
    cap = cv2.VideoCapture(str(written))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == N_FRAMES
    cap.release()


@pytest.mark.usefixtures("ctrl_c_delivered")
def test_ctrl_c_stops_a_webcam_and_keeps_its_results(run: Path, camera_stand_in: Path, tmp_path: Path) -> None:
    served = []

    def ctrl_c_after_five() -> None:
        served.append(1)
        if len(served) == 5:
            signal.raise_signal(signal.SIGINT)  # a real SIGINT, as a terminal sends it

    summary, records = _webcam_run(run, camera_stand_in, tmp_path / "annotated", ctrl_c_after_five)
    assert summary.interrupted and summary.items == 5  # how one stops a camera: not an error
    assert [r["frame"] for r in records] == [0, 1, 2, 3, 4]
    cap = cv2.VideoCapture(str(tmp_path / "annotated" / "webcam0.mp4"))  # the annotated video is finished, not lost
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()


@pytest.mark.usefixtures("ctrl_c_delivered")
def test_ctrl_c_on_files_exits_130_and_leaves_no_partial_output(
    run: Path,
    camera_stand_in: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    class CtrlCAfterThreeFrames(pipeline.VideoWriter):
        frames = 0

        def write(self, rgb: np.ndarray) -> None:
            super().write(rgb)
            CtrlCAfterThreeFrames.frames += 1
            if CtrlCAfterThreeFrames.frames == 3:
                signal.raise_signal(signal.SIGINT)  # mid-video: the results file and the video are half written

    monkeypatch.setattr(pipeline, "VideoWriter", CtrlCAfterThreeFrames)
    results, annotated = tmp_path / "results", tmp_path / "annotated"
    code = main(
        [
            "predict",
            str(run),
            str(camera_stand_in),
            "--out",
            str(results / "frames.jsonl"),
            "--save-annotated",
            str(annotated),
            "--batch-size",
            "2",
            "--quiet",
        ]
    )
    assert code == 130 and capsys.readouterr().err.strip() == "affectlab: interrupted"
    assert CtrlCAfterThreeFrames.frames == 3
    assert list(results.iterdir()) == []  # no results file, and no temporary one either
    assert list(annotated.iterdir()) == []  # the half-written annotated video was removed


# ---------------------------------------------------------------------------------------------------------------
# Key frames (--detect-every) and decoding ahead
# ---------------------------------------------------------------------------------------------------------------


class _CountingDetector:
    """The default detector, counting the frames it is run on (a user-supplied ``FaceDetector``, as the API allows)."""

    def __init__(self) -> None:
        from affectlab.runtime.faces import make_detector

        self.inner = make_detector("auto")
        self.name = self.inner.name
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Any]:
        self.calls += 1
        return self.inner.detect(image)


def _records(predictor: Any, video: Path, config: PredictConfig) -> list[dict[str, Any]]:
    stream = io.StringIO()
    writer = RecordWriter(stream, "jsonl")
    run_predictions(predictor, expand_inputs([str(video)]), lambda r: writer.write(r.records()), config)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize("workers", [1, 2])
def test_detect_every_detects_on_key_frames_and_follows_the_faces_in_between(
    run: Path, video: Path, workers: int
) -> None:
    detector = _CountingDetector()
    predictor = affectlab.load(run, detector=detector, workers=workers, detect_every=5, batch_size=4)
    records = _records(predictor, video, PredictConfig())
    every = _records(affectlab.load(run, workers=1), video, PredictConfig())
    assert detector.calls == -(-N_FRAMES // 5)  # frames 0, 5, 10, 15, 20
    assert [r["frame"] for r in records] == list(range(N_FRAMES))
    followed, held = [], []
    for r in records:
        key = every[r["frame"] - r["frame"] % 5]
        if r["frame"] % 5 == 0:  # key frames are exactly the every-frame run's
            assert r["box"] == key["box"]
            np.testing.assert_allclose(list(r["probs"].values()), list(key["probs"].values()), atol=1e-5)
            continue
        assert r["box"][2:] == key["box"][2:]  # moved, not resized
        if r["frame"] >= 10:  # two key frames seen: the face's motion (5 px a frame to the right) is known
            followed.append(abs(r["box"][0] - every[r["frame"]]["box"][0]))
            held.append(abs(key["box"][0] - every[r["frame"]]["box"][0]))
    # the boxes in between follow the face: much closer to where the detector finds it than the key frame's box
    assert np.mean(followed) < 0.5 * np.mean(held), (followed, held)


def test_detect_every_gives_the_same_records_on_one_thread_and_on_several(run: Path, video: Path) -> None:
    one = _records(affectlab.load(run, workers=1, detect_every=3), video, PredictConfig())
    two = _records(affectlab.load(run, workers=2, detect_every=3), video, PredictConfig())
    assert [r["box"] for r in one] == [r["box"] for r in two]
    np.testing.assert_allclose(
        [list(r["probs"].values()) for r in one], [list(r["probs"].values()) for r in two], atol=1e-5
    )


def test_detect_every_restarts_on_each_video_and_leaves_photos_alone(
    run: Path, video: Path, frames: list[np.ndarray], tmp_path: Path
) -> None:
    photo, second = tmp_path / "photo.png", tmp_path / f"second{video.suffix}"
    cv2.imwrite(str(photo), frames[0])
    second.write_bytes(video.read_bytes())
    detector = _CountingDetector()
    predictor = affectlab.load(run, detector=detector, workers=2, detect_every=4)
    results: list[ImageResult] = []
    run_predictions(predictor, expand_inputs([str(video), str(photo), str(second)]), results.append, PredictConfig())
    assert len(results) == 2 * N_FRAMES + 1
    assert detector.calls == 2 * -(-N_FRAMES // 4) + 1  # each video starts with a key frame; the photo detects


def test_detect_every_is_checked_and_refused_where_it_cannot_work(run: Path, video: Path, tmp_path: Path) -> None:
    with pytest.raises(AffectlabError, match="--detect-every must be at least 1, got 0"):
        PredictConfig(detect_every=0)
    with pytest.raises(AffectlabError, match="--detect-every is for videos and webcams"):
        PredictConfig(detect_every=5, engine="ray")
    out = tmp_path / "bad.jsonl"
    assert main(["predict", str(run), str(video), "--detect-every", "0", "--out", str(out), "--quiet"]) == 2
    assert not out.exists()
    assert main(["predict", str(run), str(video), "--detect-every", "6", "--out", str(out), "--quiet"]) == 0
    assert len(out.read_text().splitlines()) == N_FRAMES


def test_read_ahead_keeps_order_raises_in_place_and_closes_the_source() -> None:
    from affectlab.runtime.video import read_ahead

    assert list(read_ahead(iter(range(100)), depth=3)) == list(range(100))
    closed: list[bool] = []

    def numbers(fail_at: int | None = None) -> Any:
        try:
            for i in range(1000):
                if i == fail_at:
                    raise ValueError(f"broken at {i}")
                yield i
        finally:
            closed.append(True)

    got: list[int] = []
    with pytest.raises(ValueError, match="broken at 7"):
        got.extend(read_ahead(numbers(fail_at=7)))
    assert got == list(range(7)) and closed == [True]
    reader = read_ahead(numbers(), depth=2)
    assert [next(reader) for _ in range(5)] == list(range(5))
    reader.close()  # the consumer stops early: the thread ends and the source is closed, in that thread
    assert closed == [True, True]
    assert not [t for t in threading.enumerate() if t.name == "affectlab-read-ahead"]


def test_video_read_ahead_gives_the_records_of_the_sequential_path(run: Path, video: Path) -> None:
    ahead = _records(affectlab.load(run, workers=2), video, PredictConfig())
    sequential = _records(affectlab.load(run, workers=1), video, PredictConfig())
    assert [(r["frame"], r["box"]) for r in ahead] == [(r["frame"], r["box"]) for r in sequential]
    np.testing.assert_allclose(
        [list(r["probs"].values()) for r in ahead], [list(r["probs"].values()) for r in sequential], atol=1e-5
    )
