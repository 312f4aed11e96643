"""``Item``: one image or video frame on its way to the predictor, as every input source yields it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Item"]


@dataclass
class Item:
    """One image or video frame waiting for prediction; ``error`` instead of ``image`` if it could not be read.

    A photo file may come as its ``path`` alone: the predictor reads it, at the scales it needs.
    """

    source: str
    image: np.ndarray | None = None
    frame: int | None = None
    time_s: float | None = None
    error: str | None = None
    path: Path | None = None
