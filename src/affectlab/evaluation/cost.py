"""What each part of a run cost: wall seconds per section, recorded in ``metrics.json`` under ``cost``.

The evaluation sections (calibration, robustness, faces in scenes, figures) grew until scoring a frozen VGG16 cost
three times its training, and nobody saw it until a study took 20 minutes. Every run now records, next to its
scores, the seconds each section took (``time.perf_counter``, wall time in this process), so that a report shows
what a section costs and a change that makes one dearer is seen in the next run's ``metrics.json``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["COST_SECTIONS", "SectionClock"]

#: The sections a run can time, in the order a run does them and a report lists them (each recorded as ``NAME_s``).
COST_SECTIONS = {
    "train": "training (feature extraction included)",
    "crop": "crop fit (detector over training faces)",
    "calibration": "calibration (validation split)",
    "clean": "clean scoring (test split)",
    "robustness": "robustness (camera damage)",
    "scenes": "faces in scenes (detector, end to end)",
    "figures": "figures and predictions.csv",
    "efficiency": "size and speed (ONNX export, timing)",
}


class SectionClock:
    """Accumulates wall seconds per named section: ``with clock("robustness"): ...``.

    A section timed twice adds up; ``to_dict()`` gives ``{"train_s": ..., ..., "total_s": ...}`` in the order of
    ``COST_SECTIONS`` (sections never timed are left out), rounded to 10 ms.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, section: str) -> Iterator[None]:
        if section not in COST_SECTIONS:
            raise ValueError(f"unknown cost section {section!r}; known: {', '.join(COST_SECTIONS)}")
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[section] = self.seconds.get(section, 0.0) + time.perf_counter() - started

    def add(self, section: str, seconds: float) -> None:
        """Record seconds measured elsewhere (the training's own clock)."""
        if section not in COST_SECTIONS:
            raise ValueError(f"unknown cost section {section!r}; known: {', '.join(COST_SECTIONS)}")
        self.seconds[section] = self.seconds.get(section, 0.0) + seconds

    def to_dict(self) -> dict[str, float]:
        cost = {f"{name}_s": round(self.seconds[name], 2) for name in COST_SECTIONS if name in self.seconds}
        cost["total_s"] = round(sum(self.seconds.values()), 2)
        return cost
