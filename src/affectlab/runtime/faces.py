"""Face detection and cropping for inference on photos and video.

Detectors by name (``--detector``, ``affectlab.load(detector=...)``):

- ``yuface``: libfacedetection's CNN (the YuNet lineage, BSD) through the ``yuface`` wheel, whose weights are
  compiled into the library, so nothing is downloaded. It finds small, dark, tilted and half-profile faces that
  Haar misses, gives five landmarks, and is faster than Haar once the image is scaled down (see
  ``benchmarks/detection.py``). Needs ``pip install 'affectlab[yuface]'`` (wheels for x86-64 Linux and Windows,
  Python 3.11).
- ``haar``: OpenCV's Haar cascades, which ship inside ``opencv-python`` and need nothing extra: the fallback.
- ``none``: every image is one face crop, as AffectNet's images are.
- ``auto`` (the default): ``yuface`` where it is installed, ``haar`` otherwise.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import cv2
import numpy as np

from affectlab.data.images import resize_square, square_crop
from affectlab.errors import AffectlabError
from affectlab.runtime.detector_names import check_detector_name
from affectlab.runtime.results import Box, Detection
from affectlab.runtime.settings import DEFAULT_DETECTOR

__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "FaceDetector",
    "HaarDetector",
    "WholeImageDetector",
    "YuFaceDetector",
    "aligned_crop",
    "crop_faces",
    "eye_angle",
    "iou",
    "make_detector",
]

log = logging.getLogger(__name__)


class FaceDetector(Protocol):
    """Anything that finds faces in an RGB uint8 image."""

    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...


class WholeImageDetector:
    """The whole image is the face: for pre-cropped faces (AffectNet-style crops)."""

    name = "none"

    def detect(self, image: np.ndarray) -> list[Detection]:
        return [Detection((0, 0, int(image.shape[1]), int(image.shape[0])))]


class YuFaceDetector:
    """libfacedetection's CNN face detector (``yuface`` wheel): boxes, scores and five landmarks.

    The image is scanned with its longer side at most ``max_side`` pixels (boxes and landmarks are scaled back):
    the network's cost grows with the pixel count. On ``benchmarks/detection.py`` (640 x 480 scenes) 480 px found
    86% of the faces of 40 px and more at precision .97 and 47 frames/s per core; 320 px missed half of the
    40-80 px faces (precision .92), and 640 px found 92% (precision .98) at 30 frames/s. Faces scoring below
    ``min_score`` (0-1) are dropped. ``threads`` (default 1) caps the library's OpenMP threads (see
    ``_OmpThreads``): on a busy 2-core machine a second spinning thread made it 2-10 times slower. A lock serialises calls into the C library.
    """

    name = "yuface"

    def __init__(self, max_side: int = 480, min_score: float = 0.5, threads: int = 1) -> None:
        try:
            import yuface
        except ImportError:
            raise AffectlabError(
                "face detector 'yuface' needs the yuface package: pip install 'affectlab[yuface]' "
                "(x86-64 Linux or Windows, Python 3.11), or use --detector haar"
            ) from None
        self._detect = _FaceDetectCnn(os.path.dirname(yuface.__file__))
        self.max_side, self.min_score, self.threads = max_side, min_score, threads
        self._omp = _OmpThreads(os.path.dirname(yuface.__file__))
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[Detection]:
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image
        scale = min(1.0, self.max_side / max(rgb.shape[:2]))
        if scale < 1.0:
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        with self._lock:
            rows = np.asarray(self._omp.run(self.threads, lambda: self._detect(bgr)), dtype=np.float64)
        found = []
        for row in rows:
            if row[0] < self.min_score * 100:
                continue
            x, y, w, h = (round(v / scale) for v in row[1:5])
            points = tuple((round(row[5 + 2 * i] / scale), round(row[6 + 2 * i] / scale)) for i in range(5))
            found.append(Detection((x, y, w, h), float(row[0]) / 100.0, points))
        return sorted(found, key=lambda d: (d.box[0], d.box[1]))


class _FaceDetectCnn:
    """libfacedetection's ``facedetect_cnn`` called directly, with one result buffer reused for every call.

    ``yuface.c_detect`` allocates the library's 36,864-byte result buffer on every call and never frees it: that
    leak was the 39 KB per frame by which ``predict`` grew on long videos (issue 26). The rows are the ones
    ``c_detect`` returns (score 0-100, box, five landmarks); only its unused 16th column, uninitialised memory
    there, is left out. Not thread-safe: ``YuFaceDetector`` calls it under its lock.
    """

    BUFFER_BYTES = 0x9000  # DETECT_BUFFER_SIZE of libfacedetection
    ROW = 16  # int16 values per face: score, x, y, w, h, 5 landmark (x, y) pairs, one unused

    def __init__(self, package_dir: str) -> None:
        lib = ctypes.CDLL(os.path.join(package_dir, "libfacedetection.so"))
        self._call = lib._Z14facedetect_cnnPhS_iii  # facedetect_cnn(uchar* buffer, uchar* bgr, int w, int h, int step)
        self._call.restype = ctypes.c_void_p
        self._call.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._buffer = np.zeros(self.BUFFER_BYTES, np.uint8)
        self._max_faces = (self.BUFFER_BYTES - 4) // (2 * self.ROW)

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """(N, 15) rows for a contiguous BGR uint8 image."""
        self._call(self._buffer.ctypes.data, bgr.ctypes.data, bgr.shape[1], bgr.shape[0], bgr.strides[0])
        count = min(int(self._buffer[:4].view(np.int32)[0]), self._max_faces)
        rows = self._buffer[4 : 4 + count * 2 * self.ROW].view(np.int16).reshape(count, self.ROW)
        return rows[:, : self.ROW - 1].astype(np.float64)


class _OmpThreads:
    """Run a call with the OpenMP runtimes yuface may use capped at ``n`` threads, restoring them afterwards.

    auditwheel gives the wheel its own copy of libgomp, but once PyTorch is imported, its libgomp is in the
    global symbol scope and yuface's parallel regions can run on that one instead; so both are capped. The
    setting is per calling thread and is restored after each call, so PyTorch's own thread count is untouched.
    Without the cap, importing torch made yuface 5-10 times slower on a busy 2-core machine.
    """

    def __init__(self, package_dir: str) -> None:
        libs = sorted(glob.glob(os.path.join(os.path.dirname(package_dir), "yuface.libs", "libgomp*.so*")))
        runtimes = []
        for name in [*libs[:1], None]:  # the wheel's copy, then whatever the process has loaded globally
            try:
                lib = ctypes.CDLL(name)
                runtimes.append((lib.omp_get_max_threads, lib.omp_set_num_threads))
            except (OSError, AttributeError):
                continue
        seen: set[int] = set()
        self._runtimes = []
        for get, set_ in runtimes:
            address = ctypes.cast(set_, ctypes.c_void_p).value or 0
            if address not in seen:
                seen.add(address)
                self._runtimes.append((get, set_))

    def run(self, n: int, call: Callable[[], np.ndarray]) -> np.ndarray:
        previous = [get() for get, _ in self._runtimes]
        for _, set_ in self._runtimes:
            set_(n)
        try:
            return call()
        finally:
            for (_, set_), value in zip(self._runtimes, previous):
                set_(value)


class HaarDetector:
    """OpenCV Haar cascades: frontal faces, with a profile cascade as the fallback.

    Large images are scanned with their longer side at ``max_side`` pixels (boxes are scaled back): on a 720p
    frame this halves detection time against 640 px with the same hits on our test scenes, but faces smaller
    than about 24 / ``max_side`` of the longer side are missed; raise ``max_side`` for small faces in big
    photos. Faces smaller than ``min_face`` of the (scanned) shorter side are ignored. A lock serialises calls
    because one cascade object must not be used by two threads at once.
    """

    name = "haar"

    def __init__(
        self,
        max_side: int = 480,
        min_face: float = 0.05,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        profile: bool = True,
    ) -> None:
        self.max_side, self.min_face = max_side, min_face
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self._frontal = _cascade("haarcascade_frontalface_default.xml")
        self._profile = _cascade("haarcascade_profileface.xml") if profile else None
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[Detection]:
        return [Detection(box) for box in self._boxes(image)]

    def _boxes(self, image: np.ndarray) -> list[Box]:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        scale = min(1.0, self.max_side / max(gray.shape[:2]))
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        side = max(20, int(self.min_face * min(gray.shape[:2])))
        with self._lock:
            boxes = self._run(self._frontal, gray, side)
            if not boxes and self._profile is not None:
                boxes = self._run(self._profile, gray, side)
                width = gray.shape[1]
                mirrored = self._run(self._profile, cv2.flip(gray, 1), side)
                boxes += _dedupe([(width - x - w, y, w, h) for x, y, w, h in mirrored], boxes)
        boxes = [tuple(round(v / scale) for v in b) for b in boxes]
        return sorted(boxes, key=lambda b: (b[0], b[1]))  # type: ignore[arg-type, return-value]

    def _run(self, cascade: cv2.CascadeClassifier, gray: np.ndarray, side: int) -> list[Box]:
        found = cascade.detectMultiScale(gray, self.scale_factor, self.min_neighbors, minSize=(side, side))
        return [tuple(int(v) for v in b) for b in found] if len(found) else []  # type: ignore[misc]


def _cascade(filename: str) -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + filename  # type: ignore[attr-defined]  # not in OpenCV's stubs
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise AffectlabError(f"{path}: OpenCV Haar cascade missing or unreadable; reinstall opencv-python-headless")
    return cascade


def _dedupe(new: list[Box], kept: Sequence[Box], max_iou: float = 0.3) -> list[Box]:
    return [b for b in new if all(iou(b, k) <= max_iou for k in kept)]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


#: Detector names accepted by ``make_detector`` and ``--detector``, with what each needs.
DETECTORS: dict[str, Callable[[], FaceDetector]] = {
    "auto": lambda: _auto(),
    "yuface": YuFaceDetector,
    "haar": HaarDetector,
    "none": WholeImageDetector,
}


def _auto() -> FaceDetector:
    try:
        return YuFaceDetector()
    except AffectlabError:
        log.warning("face detector: yuface is not installed, using haar (pip install 'affectlab[yuface]')")
        return HaarDetector()


def make_detector(name: str | FaceDetector) -> FaceDetector:
    """A detector by name (see ``DETECTORS``), or the given detector object unchanged."""
    if not isinstance(name, str):
        return name
    check_detector_name(name)
    return DETECTORS[name]()


def crop_faces(
    image: np.ndarray,
    faces: Sequence[Box | Detection],
    size: int,
    margin: float,
    align: bool = False,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Square crops of ``size`` pixels, each box grown by ``margin`` (a fraction of its side) before squaring.

    A whole-image box gets no margin: a pre-cropped face already has its context, and padding it would shrink
    the face relative to what the model was trained on. With ``align``, faces that have landmarks are first
    rotated about their box centre so that the eye line is level (see ``aligned_crop``). ``shift`` is the
    model's crop offset (``Preprocess.face_shift``, see ``square_crop``).
    """
    out = np.empty((len(faces), size, size, 3), dtype=np.uint8)
    height, width = image.shape[:2]
    for i, face in enumerate(faces):
        box: Box = face.box if isinstance(face, Detection) else tuple(face)  # type: ignore[assignment]
        landmarks = face.landmarks if isinstance(face, Detection) else None
        if box == (0, 0, width, height):
            crop = image
        elif align and landmarks is not None:
            crop = aligned_crop(image, box, landmarks, margin, shift)
        else:
            crop = square_crop(image, box, margin, shift)
        out[i] = resize_square(crop, size)
    return out


def eye_angle(landmarks: Sequence[tuple[int, int]]) -> float:
    """Angle of the eye line in degrees (positive when the eye on the image's right is lower)."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return float(np.degrees(np.arctan2(ry - ly, rx - lx)))


def aligned_crop(
    image: np.ndarray,
    box: Box,
    landmarks: Sequence[tuple[int, int]],
    margin: float,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """The square crop of ``box`` (with ``margin``) after rotating the image about the box centre so that the
    eyes are level; only the neighbourhood of the box is warped. Scale and centre stay the detector's, so the
    crop has the same size and margin as a plain one."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    reach = int(np.ceil(side * 0.75)) + 2  # half the diagonal of the crop, so the rotated square stays inside
    cx, cy = x + w / 2.0 + shift[0] * max(w, h), y + h / 2.0 + shift[1] * max(w, h)
    patch = square_crop(image, (round(cx) - reach, round(cy) - reach, 2 * reach, 2 * reach))
    rotation = cv2.getRotationMatrix2D((patch.shape[1] / 2.0, patch.shape[0] / 2.0), eye_angle(landmarks), 1.0)
    level = cv2.warpAffine(
        patch, rotation, (patch.shape[1], patch.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    centre = patch.shape[0] / 2.0
    return square_crop(level, (round(centre - side / 2), round(centre - side / 2), round(side), round(side)))
