"""A photo file decoded at the scales its steps need: small for the detector, large enough for each face crop.

The detector scans a photo at about 480 px, yet a 10 MP JPEG costs 50-90 ms to decode in full. libjpeg-turbo can
decode a JPEG at 1/2, 1/4 or 1/8 of its size by scaling the DCT (OpenCV's ``IMREAD_REDUCED_COLOR_*``), which
skips most of the inverse transform and colour conversion. So a JPEG is decoded once at the smallest such scale
that still gives the detector its input size, and face crops are taken from a decode at the smallest scale that
still gives every face at least the model's input size (often the same decode); other formats are decoded in full
once, as before. OpenCV applies the EXIF orientation on every path, as ``read_rgb`` does.

Crops taken this way differ from full-resolution crops only by resampling (an area average in the DCT instead of
in ``cv2.resize``): ``benchmarks/folder_speed.py`` and ``tests/test_scaled_decode.py`` measure how much.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from affectlab.data.images import check_pixels, decode_rgb, header_size
from affectlab.errors import AffectlabError

__all__ = ["DCT_DENOMINATORS", "ScaledPhoto"]

#: The DCT scalings libjpeg offers through OpenCV: 1/8, 1/4, 1/2 and the full size.
DCT_DENOMINATORS = (8, 4, 2, 1)
_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_JPEG_MAGIC = b"\xff\xd8\xff"


class ScaledPhoto:
    """An image file held as bytes, decoded (and cached) at the DCT scales asked for.

    ``size`` is the full image's (width, height) after the EXIF orientation. Only JPEG files have reduced
    scales; anything else has only the full decode.
    """

    def __init__(self, data: bytes, name: str) -> None:
        if not data:
            raise AffectlabError(f"{name}: empty file, not an image")
        width, height = header_size(io.BytesIO(data), name)
        check_pixels(width, height, name)
        self.data, self.name = data, name
        self.jpeg = data[:3] == _JPEG_MAGIC
        self._raw = (width, height)  # before the EXIF orientation, which the first decode tells
        self._size: tuple[int, int] | None = None
        self._decoded: dict[int, np.ndarray] = {}

    @classmethod
    def read(cls, path: str | Path) -> ScaledPhoto:
        """The file's bytes, with its header checked; one ``AffectlabError`` line naming it if it cannot be read."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AffectlabError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return cls(data, str(path))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the full, oriented image."""
        if self._size is None:
            self.decode(self.denominator_for(1))  # the smallest decode says whether the orientation swaps the sides
        assert self._size is not None
        return self._size

    def denominator_for(self, side: int) -> int:
        """The largest DCT denominator whose decode still has ``side`` pixels on its longer side (1 if not JPEG)."""
        if not self.jpeg:
            return 1
        longest = max(self._raw)
        return next(d for d in DCT_DENOMINATORS if -(-longest // d) >= side or d == 1)

    def decode(self, denominator: int) -> np.ndarray:
        """RGB uint8 at 1/``denominator`` of the full size (rounded up, as libjpeg does)."""
        if denominator not in self._decoded:
            if denominator == 1:
                image = decode_rgb(self.data, self.name)
            else:
                image = self._reduced(denominator)
            self._orient(image.shape[1], image.shape[0], denominator)
            self._decoded[denominator] = image
        return self._decoded[denominator]

    def _reduced(self, denominator: int) -> np.ndarray:
        try:
            bgr = cv2.imdecode(np.frombuffer(self.data, np.uint8), _FLAGS[denominator])
        except cv2.error:
            bgr = None
        if bgr is None:
            raise AffectlabError(f"{self.name}: not a readable image (corrupt or unsupported format)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _orient(self, width: int, height: int, denominator: int) -> None:
        raw_w, raw_h = self._raw
        if (width, height) == (-(-raw_w // denominator), -(-raw_h // denominator)):
            size = (raw_w, raw_h)
        elif (width, height) == (-(-raw_h // denominator), -(-raw_w // denominator)):
            size = (raw_h, raw_w)  # EXIF orientation 5-8: rotated by a quarter turn
        else:
            raise AffectlabError(f"{self.name}: decoded size {width}x{height} does not match its header")
        if self._size is not None and self._size != size:
            raise AffectlabError(f"{self.name}: decoded sizes disagree across scales")
        self._size = size

    def scale_of(self, denominator: int) -> tuple[float, float]:
        """(x, y) factors from full-image coordinates to the decode at ``denominator``."""
        image = self.decode(denominator)
        width, height = self.size
        return image.shape[1] / width, image.shape[0] / height
