"""Blinks per face track: each eye's openness over the processed frames of a video, read with hysteresis.

A track's openness (the mean of its two eyes, ``Eyes.openness``) is compared with its own open level, the 90th
percentile of its last ``LEVEL_FRAMES`` readings, so that people with narrow or wide eyes are read alike without
calibration. The eyes count as closed when the openness falls below ``CLOSED`` of that level, and a blink is
counted when they open again past ``REOPENED`` of it (open, closed, open). The gap between the two thresholds keeps
a noisy reading near one of them from counting twice. With ``--every N`` or a low frame rate a short blink can fall
between processed frames and is missed: blinks last 100-400 ms, so count them on 15 processed frames a second or
more. Eyes closed for longer (a nap) also count once, when they open.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from affectlab.runtime.results import ImageResult

__all__ = ["CLOSED", "REOPENED", "BlinkCounter"]

#: Eyes are closed below this fraction of the track's open level...
CLOSED = 0.5
#: ...and open again above this one, which counts the blink.
REOPENED = 0.75
#: Readings the open level is taken over (about 10 s at 30 processed frames a second).
LEVEL_FRAMES = 300


@dataclass
class _TrackEyes:
    history: deque[float] = field(default_factory=lambda: deque(maxlen=LEVEL_FRAMES))
    closed: bool = False
    blinks: int = 0

    def add(self, openness: float) -> int:
        self.history.append(openness)
        level = float(np.percentile(self.history, 90))
        if not self.closed and openness < CLOSED * level:
            self.closed = True
        elif self.closed and openness > REOPENED * level:
            self.closed, self.blinks = False, self.blinks + 1
        return self.blinks


class BlinkCounter:
    """Call it on each processed frame's ``ImageResult`` of one video, in order, after ``FaceTracker``: every face
    with a ``track_id`` and eyes gets its track's blinks so far on ``Eyes.blinks``. Make one per video."""

    def __init__(self) -> None:
        self._tracks: dict[int, _TrackEyes] = {}

    def __call__(self, result: ImageResult) -> ImageResult:
        if result.error is not None or not any(f.eyes is not None for f in result.faces):
            return result
        faces = []
        for face in result.faces:
            eyes = face.eyes
            if face.track_id is not None and eyes is not None and eyes.openness is not None:
                track = self._tracks.setdefault(face.track_id, _TrackEyes())
                face = replace(face, eyes=replace(eyes, blinks=track.add(float(np.mean(eyes.openness)))))
            faces.append(face)
        return replace(result, faces=faces)
