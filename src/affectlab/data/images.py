"""Image decoding: every image is read and resized once into a uint8 array that all later steps share.

Decoding dominates a small-data CPU run if it is repeated every epoch, so a run decodes each image exactly once
into ``(N, S, S, 3)`` RGB uint8 and trains from memory (3,999 images at 128 px take about 200 MB).

Every image is bounded before it is decoded: its width and height are read from the header (PIL's lazy open
reads no pixels), and an image over ``max_image_pixels()`` is refused, since a 100 KB PNG can declare 10000 x 10000
pixels and cost gigabytes to decode. Decoder errors (``cv2.error``, PIL's) become one ``AffectlabError`` line.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from affectlab.data.samples import Problem, Sample
from affectlab.errors import AffectlabError

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "MAX_PIXELS_ENV",
    "check_pixels",
    "decode_face",
    "decode_jpeg",
    "decode_rgb",
    "decode_samples",
    "file_md5",
    "header_size",
    "max_image_pixels",
    "read_rgb",
    "square_crop",
]

#: 50 megapixels: above any face photo worth analysing (an 8K frame is 33 MP), far below what exhausts memory.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
MAX_PIXELS_ENV = "AFFECTLAB_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The largest width x height decoded: ``$AFFECTLAB_MAX_IMAGE_PIXELS``, else 50 million."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise AffectlabError(f"{MAX_PIXELS_ENV}={text!r}: expected a positive whole number of pixels")
    return value


def check_pixels(width: int, height: int, name: str) -> None:
    """Refuse an image whose declared size is over ``max_image_pixels()``, before anything is decoded."""
    limit = max_image_pixels()
    if width * height > limit:
        raise AffectlabError(
            f"{name}: image is {width}x{height} pixels, over the limit of {limit:,} ({MAX_PIXELS_ENV} sets it)"
        )


def header_size(source: Any, name: str) -> tuple[int, int]:
    """Width and height from the image header; PIL's lazy open reads no pixel data."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                return image.size
    except Image.DecompressionBombError as exc:  # PIL's own bound, above ours: refused before it gives a size
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise AffectlabError(
            f"{name}: image has {pixels}, over the limit of {max_image_pixels():,} ({MAX_PIXELS_ENV} sets it)"
        ) from None
    except Exception:  # PIL raises many types for a corrupt header; all mean the same to a user
        raise AffectlabError(f"{name}: not a readable image (corrupt or unsupported format)") from None


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """Decode image bytes (an upload, a file's content) to RGB uint8, bounded by ``max_image_pixels()``."""
    if not data:
        raise AffectlabError(f"{name}: empty file, not an image")
    check_pixels(*header_size(io.BytesIO(data), name), name)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # e.g. a header over OpenCV's own pixel cap
        image = None
    if image is None:
        raise AffectlabError(f"{name}: not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_jpeg(data: bytes | memoryview) -> np.ndarray:
    """A face stored by ``affectlab data convert`` (JPEG bytes of a checked crop) as RGB uint8 HWC."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise AffectlabError("a stored face is not a readable JPEG: the shards are damaged; convert again")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8, raising ``AffectlabError`` naming the file when it cannot be read.

    The header is checked before the file is read in full, so an oversized image costs no more than its header.
    """
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size:
            check_pixels(*header_size(path, str(path)), str(path))
        data = path.read_bytes()
    except OSError as exc:
        raise AffectlabError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_rgb(data, str(path))


def square_crop(
    image: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.0, shift: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Crop a face box grown by ``margin`` (fraction of its size) and squared, padding with edge pixels.

    Squaring before resizing keeps the face's aspect ratio; edge padding avoids black bars when a face touches
    the frame border. ``shift`` moves the crop's centre from the box's by (x, y) fractions of the box's longer
    side: a model's crop protocol (``Preprocess.face_shift``) puts the detector's box where the training images
    had their faces.
    """
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0 + shift[0] * max(w, h), y + h / 2.0 + shift[1] * max(w, h)
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
            out[len(ok)] = decode_face(sample, size)
        except AffectlabError as exc:
            if on_bad_sample == "error":
                raise
            problems.append(Problem(str(sample.path), str(exc).split(": ", 1)[-1]))
            continue
        ok.append(i)
    return out[: len(ok)], ok, problems


def decode_face(sample: Sample, size: int) -> np.ndarray:
    """One sample's face as ``(size, size, 3)`` RGB uint8: decoded, cropped to its box when it has one, resized."""
    image = read_rgb(sample.path)
    if sample.box is not None:
        image = square_crop(image, sample.box)
    return resize_square(image, size)


def file_md5(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()
