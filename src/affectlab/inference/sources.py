"""What ``affectlab predict`` reads: image files, folders (recursive), video files and webcams.

Inputs are sorted out by file suffix before anything is decoded, so a folder of mixed files is processed in a
stable order, and a video is never mistaken for an image. Decoding happens later, one item at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "Source", "expand_inputs", "list_images"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv"})


@dataclass(frozen=True)
class Source:
    """One input: ``kind`` is image, video or webcam; ``name`` is what output records call it.

    ``rel`` is the path relative to the folder it was found in (for naming annotated outputs without clashes).
    """

    kind: str
    name: str
    path: Path | None = None
    rel: Path | None = None
    camera: int | None = None


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), in sorted order; hidden files and folders are skipped."""
    return [p for p in _walk(folder) if p.suffix.lower() in IMAGE_SUFFIXES]


def _walk(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            files.append(path)
    return files


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
            for file in _walk(path):
                kind = _kind(file)
                if kind:
                    sources.append(Source(kind, str(file), file, Path(path.name) / file.relative_to(path)))
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
