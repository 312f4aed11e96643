"""The file suffixes affectlab reads as images and as videos (lower case), without importing numpy or OpenCV: the
command line tells a model argument from an input with them before anything heavy is imported."""

from __future__ import annotations

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES"]

#: The image files affectlab reads, in datasets and in ``predict`` alike.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
#: The video files ``predict`` reads (PyAV).
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv"})
