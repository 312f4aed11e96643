"""Flat memory on long videos: the detector frees what it allocates, and per-face state does not grow per frame.

Issue 26 measured 39 KB more peak memory per frame of video. It came from the ``yuface`` wheel, whose
``c_detect`` allocates libfacedetection's 36,864-byte result buffer on every call and never frees it;
``YuFaceDetector`` now calls the library with one buffer of its own.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from support.models import demo_faces, scene

from affectlab.runtime.faces import make_detector
from affectlab.runtime.results import FaceResult, ImageResult
from affectlab.runtime.tracking import FaceTracker
from affectlab.runtime.video import Smoother


def _rss_mb() -> float:
    with open("/proc/self/statm") as stats:
        return int(stats.read().split()[1]) * 4096 / 2**20


@pytest.fixture(scope="module")
def two_faces(work: Path) -> np.ndarray:
    faces = demo_faces(work)
    return cv2.cvtColor(scene([faces[0], faces[2]], [(40, 100), (400, 200)]), cv2.COLOR_BGR2RGB)


def test_yuface_rows_are_those_of_the_wheel(two_faces: np.ndarray) -> None:
    """Called directly, the library gives the rows ``yuface.c_detect`` gives (its unused 16th column aside)."""
    yuface = pytest.importorskip("yuface", reason="the yuface wheel exists for x86-64 Linux/Windows, Python 3.11 only")
    detector = make_detector("yuface")
    for image in (two_faces, cv2.resize(two_faces, (320, 240))):
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        wheel = np.asarray(yuface.c_detect(bgr), dtype=np.float64).reshape(-1, 16)[:, :15]
        ours = detector._detect(bgr)  # type: ignore[attr-defined]
        assert len(ours) >= 2 if image is two_faces else True
        np.testing.assert_array_equal(ours, wheel)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc (Linux)")
def test_yuface_does_not_grow_memory_per_call(two_faces: np.ndarray) -> None:
    """500 detections: the old leak (36 KB a call) would add 18 MB; allow 6 MB of allocator noise."""
    pytest.importorskip("yuface", reason="the yuface wheel exists for x86-64 Linux/Windows, Python 3.11 only")
    detector = make_detector("yuface")
    small = cv2.resize(two_faces, (160, 120))
    for _ in range(50):  # warm up the library's own buffers
        detector.detect(small)
    before = _rss_mb()
    for _ in range(500):
        detector.detect(small)
    assert _rss_mb() - before < 6.0


def test_tracking_and_smoothing_state_does_not_grow_with_frames() -> None:
    """Faces come and go over 3,000 frames: the tracker and smoother hold state for the live tracks only."""
    tracker, smoother = FaceTracker(max_age=10), Smoother(5)  # as track_and_smooth(5) makes them
    tracker_sizes, smoother_sizes = [], []
    probs = np.full(8, 1 / 8, dtype=np.float32)
    for i in range(3000):
        x = (i * 7) % 600  # a face sweeps the frame, then reappears on the left as a new track
        faces = [FaceResult((x, 50, 40, 40), probs=probs, valence=0.1, arousal=0.2)]
        if i % 3:
            faces.append(FaceResult((300, 300 + (i % 50), 40, 40), probs=probs, valence=0.0, arousal=0.0))
        out = smoother(tracker(ImageResult("v", faces, frame=i)))
        assert all(face.track_id is not None for face in out)
        tracker_sizes.append(len(tracker._tracks))
        smoother_sizes.append(len(smoother._history) + len(smoother._seen))
    assert max(tracker_sizes[100:]) <= 4 and max(smoother_sizes[100:]) <= 8
    assert max(tracker_sizes[-500:]) <= max(tracker_sizes[100:600])
