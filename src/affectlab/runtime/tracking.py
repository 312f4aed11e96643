"""Face tracks across video frames: every face gets a ``track_id`` that stays with the same person.

Matching is one global assignment per frame (the Hungarian method, ``scipy.optimize.linear_sum_assignment``)
between the faces found and where each track is expected to be. The expected box is the track's last box moved
by its velocity, so two faces that cross keep their identities: at the crossing, each face is closer to the box
its own track predicts than to the other one's (nearest-centre matching would swap them).

The cost of a pair is ``1 - IoU`` when the boxes overlap, else ``1 + distance between centres / box side``
(so fast faces, or ``--every N``, still match); pairs whose centres lie more than ``max_distance`` box sides
apart never match. A face without a match starts a new track; a track unseen for ``max_age`` processed frames is
dropped, and its number is never given again within the video.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from affectlab.runtime.blinks import BlinkCounter
from affectlab.runtime.faces import iou
from affectlab.runtime.results import Box, ImageResult
from affectlab.runtime.video import Smoother

__all__ = ["FaceTracker", "track_and_smooth"]

_NO_MATCH = 1e6


@dataclass
class _Track:
    track_id: int
    box: Box
    seen: int
    velocity: tuple[float, float] = (0.0, 0.0)

    def expected(self, tick: int) -> Box:
        """The last box moved by the velocity for the frames since it was seen."""
        steps = tick - self.seen
        x, y, w, h = self.box
        return (round(x + self.velocity[0] * steps), round(y + self.velocity[1] * steps), w, h)

    def update(self, box: Box, tick: int) -> None:
        steps = max(1, tick - self.seen)
        moved = ((_centre(box)[0] - _centre(self.box)[0]) / steps, (_centre(box)[1] - _centre(self.box)[1]) / steps)
        # An average of the last moves: steady for faces in motion, quick to settle after a stop.
        self.velocity = (0.5 * (self.velocity[0] + moved[0]), 0.5 * (self.velocity[1] + moved[1]))
        self.box, self.seen = box, tick


class FaceTracker:
    """Give each face of consecutive frames of one video a stable ``track_id`` (0, 1, 2, ... in order of appearance).

    Call it on every processed frame's ``ImageResult``, in order; it returns the result with ``track_id`` set.
    Frames with an error are passed through and do not age the tracks.
    """

    def __init__(self, max_age: int = 10, max_distance: float = 1.0) -> None:
        self.max_age, self.max_distance = max_age, max_distance
        self._tracks: list[_Track] = []
        self._tick = 0
        self._next_id = 0

    def __call__(self, result: ImageResult) -> ImageResult:
        if result.error is not None:
            return result
        self._tick += 1
        tracks = self._tracks
        boxes = [face.box for face in result.faces]
        pairs: dict[int, _Track] = {}
        if tracks and boxes:
            cost = np.array([[self._cost(t.expected(self._tick), b) for t in tracks] for b in boxes])
            for row, col in zip(*linear_sum_assignment(cost)):
                if cost[row, col] < _NO_MATCH:
                    pairs[int(row)] = tracks[int(col)]
        faces = []
        for i, face in enumerate(result.faces):
            track = pairs.get(i)
            if track is None:
                track = _Track(self._next_id, face.box, self._tick)
                self._next_id += 1
                self._tracks.append(track)
            else:
                track.update(face.box, self._tick)
            faces.append(replace(face, track_id=track.track_id))
        self._tracks = [t for t in self._tracks if self._tick - t.seen < self.max_age]
        return replace(result, faces=faces)

    def velocity(self, track_id: int | None) -> tuple[float, float]:
        """How far a live track's box centre moves per call, in pixels (x, y): an average of its recent moves."""
        return next((t.velocity for t in self._tracks if t.track_id == track_id), (0.0, 0.0))

    def _cost(self, expected: Box, box: Box) -> float:
        overlap = iou(expected, box)
        if overlap > 0:
            return 1.0 - overlap
        side = max(expected[2], expected[3], box[2], box[3], 1)
        (ex, ey), (bx, by) = _centre(expected), _centre(box)
        distance = float(np.hypot(ex - bx, ey - by)) / side
        return 1.0 + distance if distance <= self.max_distance else _NO_MATCH


def _centre(box: Box) -> tuple[float, float]:
    return box[0] + box[2] / 2.0, box[1] + box[3] / 2.0


def track_and_smooth(smooth: int) -> Callable[[ImageResult], ImageResult]:
    """One video's per-frame step: number the faces (``FaceTracker``), average each over ``smooth`` frames, and
    count each track's blinks where the eyes were asked for (``BlinkCounter``; openness is not smoothed).

    A track outlives a gap of ``max(10, smooth)`` frames, so a face missed for a frame or two keeps its number and
    its smoothing history. Make one per video: the state belongs to that video.
    """
    tracker, smoother, blinks = FaceTracker(max_age=max(10, smooth)), Smoother(smooth), BlinkCounter()
    return lambda result: blinks(smoother(tracker(result)))
