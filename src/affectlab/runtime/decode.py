"""A photo file decoded at the scales its steps need: small for the detector, large enough for each face crop.

The detector scans a photo at about 480 px, yet a 10 MP JPEG costs 35-90 ms to decode in full. libjpeg-turbo can
decode a JPEG at 1/2, 1/4 or 1/8 of its size by scaling the DCT (OpenCV's ``IMREAD_REDUCED_COLOR_*``), which
skips most of the inverse transform and colour conversion, but not the entropy decoding, which every decode pays
in full: 11.4 ms of a 1.5 MB 10 MP file, against 14.7 ms for the whole 1/2 decode and 34 ms for the full one.

So a JPEG is decoded first at the smallest scale that still gives the detector its input size, but no smaller
than 1/2 (``FIRST_DENOMINATOR``): the detector scales that down itself, and the face crops of a big photo can
usually come from the same decode, so the entropy decoding is paid once. Only when a face needs more pixels than
the first decode has (``CROP_OVERSAMPLE`` times the model's input across its crop) is the photo decoded again,
at the scale that face needs. Other formats are decoded in full once. OpenCV applies the EXIF orientation on
every path, as ``read_rgb`` does.

Crops taken this way differ from full-resolution crops only by resampling (an area average in the DCT instead of
in ``cv2.resize``): ``benchmarks/folder_speed.py`` and ``tests/test_fast_predict.py`` measure how much.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from affectlab.data.images import check_pixels, decode_rgb, header_size
from affectlab.errors import AffectlabError
from affectlab.runtime.faces import FaceDetector, WholeImageDetector, crop_faces
from affectlab.runtime.results import Detection

__all__ = ["CROP_OVERSAMPLE", "DCT_DENOMINATORS", "FIRST_DENOMINATOR", "ScaledPhoto", "photo_faces"]

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

    @property
    def longest_side(self) -> int:
        """The full image's longer side (the same before and after the EXIF orientation)."""
        return max(self._raw)

    @property
    def decodes(self) -> list[int]:
        """The DCT denominators decoded so far: each one paid the file's entropy decoding once."""
        return sorted(self._decoded)

    def denominator_for(self, side: int) -> int:
        """The largest DCT denominator whose decode still has ``side`` pixels on its longer side (1 if not JPEG)."""
        if not self.jpeg:
            return 1
        longest = self.longest_side
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


def photo_faces(
    photo: ScaledPhoto,
    detector: FaceDetector,
    size: int,
    margin: float,
    align: bool = False,
    shift: tuple[float, float] = (0.0, 0.0),
) -> tuple[list[Detection], np.ndarray]:
    """The faces of a photo (boxes in full-size pixels) and their ``size`` crops, from as few decodes as may be.

    The detector gets a decode near the side it scans at (its ``max_side``), but no smaller than
    1/``FIRST_DENOMINATOR``; the crops come from that decode when it has ``CROP_OVERSAMPLE`` times ``size``
    pixels across the smallest face's crop, else from one decode at the scale that face needs. A detector with no
    known scan size gets the full decode, as before.
    """
    scan = _scan_side(detector)
    if scan is None:
        image = photo.decode(1)
        found = detector.detect(image)
        return found, crop_faces(image, found, size, margin, align, shift)
    if scan == 0:  # the whole image is the face: no detection, and one decode at the scale its crop needs
        first = _crop_denominator(photo.longest_side, size, WHOLE_OVERSAMPLE) if photo.jpeg else 1
        photo.decode(first)
        found = [Detection((0, 0, *photo.size))]
    else:
        first = min(FIRST_DENOMINATOR, photo.denominator_for(scan))
        sx, sy = photo.scale_of(first)
        found = [_rescaled(d, 1 / sx, 1 / sy) for d in detector.detect(photo.decode(first))]
    if not found:
        return found, np.empty((0, size, size, 3), np.uint8)
    whole = (0, 0, *photo.size)
    reach = 1 + 2 * margin + 2 * max(abs(shift[0]), abs(shift[1]))  # the crop's span around the box, shift included
    needed = 1
    if photo.jpeg:  # a whole image (a pre-cropped face) keeps the oversampling it always had: see WHOLE_OVERSAMPLE
        needed = min(
            _crop_denominator(max(d.box[2:]), size, WHOLE_OVERSAMPLE)
            if d.box == whole
            else _crop_denominator(max(d.box[2:]) * reach, size, CROP_OVERSAMPLE)
            for d in found
        )
    denominator = min(first, needed)  # the first decode when it has pixels enough, else the one the faces need
    image = photo.decode(denominator)
    fx, fy = photo.scale_of(denominator)
    at_scale = [
        Detection((0, 0, image.shape[1], image.shape[0]), d.score) if d.box == whole else _rescaled(d, fx, fy, True)
        for d in found
    ]
    return found, crop_faces(image, at_scale, size, margin, align, shift)


def _scan_side(detector: FaceDetector) -> int | None:
    """The longer side a detector scans at (0: it finds no faces, the image is one), None if unknown."""
    if isinstance(detector, WholeImageDetector):
        return 0
    side = getattr(detector, "max_side", None)
    return side if isinstance(side, int) and side > 0 else None


#: A face is cropped from a decode with at least this many times the model's input size across its crop, so the
#: crop is never enlarged. Measured with the bundled model on 40 generated 10 MP photos (5 faces each, the same
#: boxes): crops from the 1/2 decode (230 px across, for 160) moved the probabilities by .005 on average (max .03)
#: from full-size crops, half of what moving the box by 2 full-size pixels does (.010). A 2x margin here made
#: these photos decode twice, the second time in full, for that .005.
CROP_OVERSAMPLE = 1
#: A whole image that is one face (``--detector none``) is resized from a decode with twice the model's input, as
#: before: its crop is what ``evaluate`` scores, so ``predict`` stays within float rounding of it on dataset crops
#: (AffectNet's 224 px crops are decoded in full for any input size above 112).
WHOLE_OVERSAMPLE = 2
#: The first decode of a JPEG is at most this much reduced, even when the detector would take a smaller one: the
#: detector scales it down (about 1.5 ms for a 10 MP photo's half) and the crops can usually come from it too,
#: where a 1/8 decode for the detector then a 1/2 or full one for the crops paid the entropy decoding twice.
FIRST_DENOMINATOR = 2


def _crop_denominator(side: float, size: int, oversample: float) -> int:
    """The largest DCT denominator at which a crop of ``side`` full-size pixels keeps ``oversample`` times ``size``
    pixels."""
    return next(d for d in DCT_DENOMINATORS if side / d >= oversample * size or d == 1)


def _rescaled(found: Detection, fx: float, fy: float, exact: bool = False) -> Detection:
    """A detection in another decode's pixels; ``exact`` keeps fractions (crops), else pixels are rounded."""

    def scale(v: float, f: float) -> Any:
        return v * f if exact else round(v * f)

    x, y, w, h = found.box
    box = (scale(x, fx), scale(y, fy), scale(w, fx), scale(h, fy))
    points = None if found.landmarks is None else tuple((scale(px, fx), scale(py, fy)) for px, py in found.landmarks)
    return Detection(box, found.score, points)
