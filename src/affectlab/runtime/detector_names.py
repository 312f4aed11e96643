"""The face detectors' names (``--detector``), known without importing OpenCV, NumPy or torch.

The command line checks ``--detector`` against these before it loads anything; ``runtime/faces.py`` builds
exactly these (a test holds the two together).
"""

from __future__ import annotations

from affectlab.errors import AffectlabError

__all__ = ["DETECTOR_NAMES", "check_detector_name"]

DETECTOR_NAMES: tuple[str, ...] = ("auto", "yuface", "haar", "none")


def check_detector_name(name: str) -> None:
    if name not in DETECTOR_NAMES:
        raise AffectlabError(f"unknown face detector {name!r}; available: {', '.join(DETECTOR_NAMES)}")
