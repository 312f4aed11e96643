"""Image decoding: every image is read and resized once into a uint8 array that all later steps share.

Decoding dominates a small-data CPU run if it is repeated every epoch, so a run decodes each image exactly once
into ``(N, S, S, 3)`` RGB uint8 and trains from memory (3,999 images at 128 px take about 200 MB).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from affectlab.data.samples import Problem, Sample
from affectlab.errors import AffectlabError

__all__ = ["read_rgb", "square_crop", "decode_samples", "file_md5"]


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8, raising ``AffectlabError`` naming the file when it cannot be read."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise AffectlabError(f"{path}: cannot read ({exc.strerror or exc})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise AffectlabError(f"{path}: not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def square_crop(image: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.0) -> np.ndarray:
    """Crop a face box grown by ``margin`` (fraction of its size) and squared, padding with edge pixels.

    Squaring before resizing keeps the face's aspect ratio; edge padding avoids black bars when a face touches
    the frame border.
    """
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    height, width = image.shape[:2]
    pad = max(0, -x0, -y0, x1 - width, y1 - height)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    return image[y0:y1, x0:x1]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] != image.shape[1]:
        image = square_crop(image, (0, 0, image.shape[1], image.shape[0]))
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def decode_samples(
    samples: Sequence[Sample], size: int, on_bad_sample: str = "skip"
) -> tuple[np.ndarray, list[int], list[Problem]]:
    """Decode and resize samples; return the images, the indices that decoded, and the problems met."""
    out = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    ok: list[int] = []
    problems: list[Problem] = []
    for i, sample in enumerate(samples):
        try:
            image = read_rgb(sample.path)
        except AffectlabError as exc:
            if on_bad_sample == "error":
                raise
            problems.append(Problem(str(sample.path), str(exc).split(": ", 1)[-1]))
            continue
        if sample.box is not None:
            image = square_crop(image, sample.box)
        out[len(ok)] = resize_square(image, size)
        ok.append(i)
    return out[: len(ok)], ok, problems


def file_md5(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()
