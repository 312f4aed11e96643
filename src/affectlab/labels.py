"""Label definitions shared by every part of affectlab: the single source of truth for names and ranges."""

from __future__ import annotations

__all__ = [
    "AFFECTNET_NON_EMOTION_CODES",
    "EMOTIONS",
    "NUM_EMOTIONS",
    "VA_NAMES",
    "VA_RANGE",
    "VA_SENTINEL",
]

#: AffectNet expression codes 0..7, in code order.
EMOTIONS: tuple[str, ...] = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
NUM_EMOTIONS = len(EMOTIONS)

#: AffectNet codes 8 (None), 9 (Uncertain) and 10 (No-Face) carry no emotion and are excluded.
AFFECTNET_NON_EMOTION_CODES = frozenset({8, 9, 10})

#: AffectNet writes -2 for valence/arousal when the annotator found no face or was unsure.
VA_SENTINEL = -2.0

VA_RANGE = (-1.0, 1.0)
VA_NAMES = ("valence", "arousal")
