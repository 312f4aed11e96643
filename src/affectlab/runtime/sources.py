"""What ``affectlab predict`` reads: image files, folders (recursive), video files and webcams.

Inputs are sorted out by file suffix before anything is decoded, so a folder of mixed files is processed in a
stable order, and a video is never mistaken for an image. Decoding happens later, one item at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from affectlab.data.suffixes import IMAGE_SUFFIXES, VIDEO_SUFFIXES

__all__ = ["VIDEO_SUFFIXES", "Source", "expand_inputs", "list_images"]


@dataclass(frozen=True)
class Source:
    """One input: ``kind`` is image, video or webcam; ``name`` is what output records call it.

    ``rel`` is the path relative to the folder it was found in (for naming annotated outputs without clashes).
    ``error`` is set for an input that cannot be read at all (a folder that cannot be listed): it becomes an
    error record.
    """

    kind: str
    name: str
    path: Path | None = None
    rel: Path | None = None
    camera: int | None = None
    error: str | None = None


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), in sorted order; hidden files and folders are skipped."""
    return [p for p in _walk(folder)[0] if p.suffix.lower() in IMAGE_SUFFIXES]


def _walk(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files under ``folder`` in sorted order, and the folders that could not be listed, with why."""
    files: list[Path] = []
    unreadable: list[tuple[Path, str]] = []

    def failed(exc: OSError) -> None:
        unreadable.append((Path(exc.filename or folder), exc.strerror or type(exc).__name__))

    for root, dirs, names in os.walk(folder, onerror=failed):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(root) / n for n in names if not n.startswith(".") and (Path(root) / n).is_file()]
    return sorted(files), sorted(unreadable)


def expand_inputs(inputs: list[str], webcam: int | None = None) -> list[Source]:
    """Turn command-line inputs into sources; folders expand to the images and videos inside them.

    A named file whose suffix is unknown is still tried as an image (it may be one without a usual suffix);
    it yields an error record if it is not. A path that does not exist also yields an error record, so one
    typo does not stop a long batch.
    """
    sources: list[Source] = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            files, unreadable = _walk(path)
            for file in files:
                kind = _kind(file)
                if kind:
                    sources.append(Source(kind, str(file), file, Path(path.name) / file.relative_to(path)))
            for folder, why in unreadable:
                sources.append(Source("folder", str(folder), folder, error=f"{folder}: cannot read folder ({why})"))
        else:
            sources.append(Source(_kind(path) or "image", str(path), path, Path(path.name)))
    if webcam is not None:
        sources.append(Source("webcam", f"webcam:{webcam}", camera=webcam, rel=Path(f"webcam{webcam}")))
    return sources


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None
