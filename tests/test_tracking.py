"""Face tracks: crossing faces keep their track_id, in the tracker alone and through a real decoded video."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.models import demo_faces, one_torch_thread, scene, write_video

from affectlab.cli import main
from affectlab.runtime.results import FaceResult, ImageResult
from affectlab.runtime.tracking import FaceTracker

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def _frame(*boxes: tuple[int, int, int, int]) -> ImageResult:
    return ImageResult("v", [FaceResult(box) for box in boxes])


def test_faces_that_cross_on_the_same_line_keep_their_tracks() -> None:
    """Two faces pass through each other on one line; at the crossing each is nearer the other's last box."""
    tracker = FaceTracker()
    ids: dict[int, list[int]] = {0: [], 1: []}
    for i in range(21):
        a, b = (10 + 15 * i, 50, 40, 40), (305 - 15 * i, 50, 40, 40)
        order = [a, b] if i % 2 else [b, a]  # the detector's order says nothing about identity
        out = tracker(_frame(*order))
        by_box = {face.box: face.track_id for face in out}
        ids[0].append(by_box[a])
        ids[1].append(by_box[b])
    assert set(ids[0]) == {ids[0][0]} and set(ids[1]) == {ids[1][0]} and ids[0][0] != ids[1][0]


def test_lost_faces_start_new_tracks_and_errors_pass_through() -> None:
    tracker = FaceTracker(max_age=2)
    assert [f.track_id for f in tracker(_frame((0, 0, 50, 50), (300, 0, 50, 50)))] == [0, 1]
    assert tracker(ImageResult("v", error="broken")).error == "broken"
    assert [f.track_id for f in tracker(_frame((5, 0, 50, 50)))] == [0]  # the other one is missing once
    assert [f.track_id for f in tracker(_frame((8, 0, 50, 50)))] == [0]  # ... and now is forgotten
    assert [f.track_id for f in tracker(_frame((8, 0, 50, 50), (300, 0, 50, 50)))] == [0, 2]
    assert [f.track_id for f in tracker(_frame((600, 400, 50, 50)))] == [3]  # too far from any track


def test_crossing_faces_in_a_video_keep_their_track_ids(run: Path, work: Path, tmp_path: Path) -> None:
    """Two different drawn faces move towards each other, cross and move apart; detection runs on every frame."""
    faces = [cv2.resize(f, (90, 90)) for f in demo_faces(work)[:3:2]]
    frames = []
    for i in range(16):
        xa, xb = 20 + 30 * i, 500 - 30 * i
        frames.append(scene(faces, [(xa, 60), (xb, 180)], size=(300, 620)))
    video = write_video(tmp_path / "cross.avi", frames, fps=10.0)
    out, annotated = tmp_path / "cross.jsonl", tmp_path / "annotated"
    assert (
        main(
            [
                "predict",
                str(run),
                str(video),
                "--out",
                str(out),
                "--smooth",
                "3",
                "--save-annotated",
                str(annotated),
                "--quiet",
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    tracks: dict[int, list[tuple[int, int]]] = {}
    for r in records:
        x, y, w, h = r["box"]
        tracks.setdefault(r["track_id"], []).append((x + w // 2, y + h // 2))
    assert len(tracks) == 2 and all(len(points) >= 14 for points in tracks.values())
    for points in tracks.values():  # one track stays in the upper row moving right, the other lower moving left
        xs, ys = np.array(points).T
        assert np.ptp(ys) < 40 and np.ptp(xs) > 300
        assert (np.all(np.diff(xs) > 0) and ys[0] < 150) or (np.all(np.diff(xs) < 0) and ys[0] > 150)
    summary = json.loads((annotated / "cross.tracks.json").read_text())["tracks"]
    assert [t["track_id"] for t in summary] == sorted(tracks) and [t["frames"] for t in summary] == [
        len(tracks[t]) for t in sorted(tracks)
    ]
    first = summary[0]
    assert first["dominant_emotion"] in first["mean_probs"] and -1 <= first["mean_valence"] <= 1
    assert first["seconds_on_screen"] == pytest.approx(first["frames"] / 10.0)
    plot = cv2.imread(str(annotated / "cross.tracks.png"))
    assert plot is not None and plot.shape[0] > 300 and plot.std() > 10
