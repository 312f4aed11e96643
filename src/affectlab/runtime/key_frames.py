"""Key frames for ``detect_every``: detect faces on every Nth video frame and follow them in between.

Detection is the larger share of a frame's cost (11 of 31 ms on a 1080p frame with two faces, on one core), so
running it on every Nth frame only buys speed. The frames in between are cropped where each face is expected: its
key-frame box moved by its velocity, which a ``FaceTracker`` run over the key frames estimates (the same
tracker that numbers faces in ``predict``). A face that appears between key frames is found at the next one.

Frames are prepared in worker threads, so the frames after a key frame wait on it, and each key frame waits on
the one before it, so the tracker sees them in order. Neither can deadlock: work starts in submission order, so
whatever a task waits on has already started.
"""

from __future__ import annotations

import threading

import numpy as np

from affectlab.runtime.faces import FaceDetector
from affectlab.runtime.results import Detection, FaceResult, ImageResult
from affectlab.runtime.tracking import FaceTracker

__all__ = ["KeyFrame"]


class KeyFrame:
    """One key frame of a video: its faces, once found, and where they are expected ``offset`` frames later.

    ``previous`` is the key frame before it in the same video (None for the first), whose tracker it continues;
    ``every`` is the number of frames from one key frame to the next.
    """

    def __init__(self, previous: KeyFrame | None, every: int) -> None:
        self.every = every
        self._previous = previous
        self._tracker: FaceTracker = previous._tracker if previous is not None else FaceTracker(max_age=3)
        self._done = threading.Event()
        self._found: list[Detection] = []
        self._motion = np.zeros((0, 2))  # pixels per frame, one row per face

    def detect(self, detector: FaceDetector, image: np.ndarray) -> list[Detection]:
        """Find the faces on the key frame itself and estimate their motion; the frames after it may then go on,
        even when the detector fails (they find no face rather than wait forever)."""
        found: list[Detection] = []
        motion = np.zeros((0, 2))
        try:
            found = detector.detect(image)
            if self._previous is not None:
                self._previous._done.wait()  # the tracker takes the key frames in order
            tracked = self._tracker(ImageResult("", [FaceResult(d.box) for d in found]))
            motion = np.array([self._tracker.velocity(f.track_id) for f in tracked], np.float64).reshape(-1, 2)
            motion /= self.every  # the tracker's step is one key frame
        finally:
            self._previous = None  # keep no chain of past key frames in memory
            self._found, self._motion = found, motion if len(motion) == len(found) else np.zeros((len(found), 2))
            self._done.set()
        return found

    def faces_at(self, offset: int) -> list[Detection]:
        """The key frame's faces moved to where they are expected ``offset`` frames after it."""
        self._done.wait()
        moved = []
        for detection, (vx, vy) in zip(self._found, self._motion):
            x, y, w, h = detection.box
            dx, dy = round(vx * offset), round(vy * offset)
            points = (
                None if detection.landmarks is None else tuple((px + dx, py + dy) for px, py in detection.landmarks)
            )
            moved.append(Detection((x + dx, y + dy, w, h), detection.score, points))
        return moved
