"""AffectPredictor: images in, one ``FaceResult`` per face out, with faces batched across images.

``load()`` picks the runtime from the file: a run folder or checkpoint runs in PyTorch, a ``.onnx`` file in ONNX
Runtime (``affectlab.load`` first swaps a run folder for its ONNX export: ``export.runtime_model``). Detection
runs per image; the face crops of several images (or video frames) are collected and sent to the model together,
since a batch of 32 crops costs far less than 32 single calls.

Photo files are decoded at the scale each step needs (``runtime.decode``), and with ``workers`` above 1 the
decoding, detection and cropping of the next items run in threads while the model runs on the current batch
(OpenCV, ONNX Runtime and PyTorch release the GIL). Results keep the input order either way.

With ``detect_every`` N above 1, the detector runs on every Nth processed frame of a video or webcam (a key
frame), and the frames after it are cropped where each face is expected (``runtime.key_frames``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import cv2
import numpy as np

from affectlab.data.images import check_pixels, read_rgb
from affectlab.errors import AffectlabError
from affectlab.models.registry import resolve_model
from affectlab.runtime.backends import Backend, ModelInfo, OnnxBackend, TorchBackend, default_threads
from affectlab.runtime.decode import ScaledPhoto, photo_faces
from affectlab.runtime.faces import DEFAULT_DETECTOR, FaceDetector, crop_faces, make_detector
from affectlab.runtime.items import Item
from affectlab.runtime.key_frames import KeyFrame
from affectlab.runtime.results import Detection, FaceResult, ImageResult
from affectlab.runtime.settings import DEFAULT_BATCH, PredictConfig

if TYPE_CHECKING:
    from affectlab.runtime.eyes import EyeLandmarker
    from affectlab.runtime.mesh import MeshLandmarker

__all__ = ["AffectPredictor", "Item", "load", "load_for", "to_rgb"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_R = TypeVar("_R")


#: One item ready for the model: the item, its faces, and their crops (None when it has no image).
_Prepared = tuple[Item, list[Detection], np.ndarray | None]


#: An item with its key frame (None: detect on it alone) and its offset from it (0: it is the key frame).
_Planned = tuple[Item, KeyFrame | None, int]


class AffectPredictor:
    """Detects faces, crops them as the model was trained (margin, square, resize) and runs the model.

    Args:
        backend: a ``TorchBackend`` or ``OnnxBackend`` (see ``load``).
        detector: a name from ``faces.DETECTORS`` (default ``"auto"``: yuface if installed, else haar; ``"none"``:
            each image is one face crop) or a ``FaceDetector``.
        batch_size: face crops per model call.
        margin: border added around detected faces, as a fraction of the box side (default: the model's).
        align: rotate each face so its eyes are level before cropping (detectors with landmarks only).
        landmarks: also run FaceMesh on each face: 468 3-D points and head pose on ``FaceResult.mesh`` (a
            ``MeshLandmarker``, or True for the default one; see ``runtime.mesh``).
        eyes: also run MediaPipe Iris on both eyes of each face: iris points, eye openness and gaze on
            ``FaceResult.eyes`` (an ``EyeLandmarker``, or True for the default one; see ``runtime.eyes``). Implies
            ``landmarks``, whose eye corners place the crops. Off by default: with the mesh it needs, it adds a fifth
            to a plain prediction's cost (``benchmarks/eyes_cost.py``).
        min_confidence: label a face ``uncertain`` when its (calibrated) top probability is below this.
        workers: threads that read, decode, detect and crop the next items while the model runs (default: the
            CPUs this process may use; 1: all in the calling thread).
        decode_at_scale: decode JPEG photos given by path at the scale each step needs (``runtime.decode``);
            False decodes every photo in full first, as releases before 26 did (kept for comparisons).
        detect_every: on video and webcam frames, run the detector on every Nth frame only and follow the faces
            in between (1: detect on every frame; see ``runtime.key_frames``).
    """

    def __init__(
        self,
        backend: Backend,
        detector: str | FaceDetector = DEFAULT_DETECTOR,
        batch_size: int = DEFAULT_BATCH,
        margin: float | None = None,
        align: bool = False,
        landmarks: bool | MeshLandmarker = False,
        min_confidence: float | None = None,
        workers: int | None = None,
        decode_at_scale: bool = True,
        detect_every: int = 1,
        eyes: bool | EyeLandmarker = False,
    ) -> None:
        if batch_size < 1:
            raise AffectlabError(f"batch size must be at least 1, got {batch_size}")
        # the one check of the values
        PredictConfig(min_confidence=min_confidence, workers=workers, detect_every=detect_every)
        self.workers = workers or default_threads()
        self.detect_every = detect_every
        self.decode_at_scale = decode_at_scale
        self.backend = backend
        self.detector = make_detector(detector)
        self.batch_size = batch_size
        self.margin = backend.info.preprocess.face_margin if margin is None else margin
        self.shift = backend.info.preprocess.face_shift  # the model's crop protocol, as fitted in training
        self.align = align
        self.landmarker: MeshLandmarker | None = None
        if landmarks is True:
            from affectlab.runtime.mesh import MeshLandmarker  # PyTorch: only when asked for, ONNX runs without it

            self.landmarker = MeshLandmarker()
        elif landmarks:
            self.landmarker = landmarks
        self.eye_landmarker: EyeLandmarker | None = None
        if eyes:
            from affectlab.runtime.eyes import EyeLandmarker

            self.eye_landmarker = EyeLandmarker() if eyes is True else eyes
            if self.landmarker is None:
                from affectlab.runtime.mesh import MeshLandmarker

                self.landmarker = MeshLandmarker()
        self.min_confidence = min_confidence

    @property
    def info(self) -> ModelInfo:
        return self.backend.info

    def predict(self, images: Any, channels: str = "rgb", keep_images: bool = False) -> ImageResult | list[ImageResult]:
        """Predict on one image or a list of images.

        Args:
            images: a path (str or Path), a PIL image, a uint8 numpy array (H x W x 3, H x W x 4 or H x W), or a
                list of these.
            channels: channel order of numpy arrays, ``"rgb"`` (default) or ``"bgr"`` (as OpenCV reads them).
            keep_images: keep each decoded image on its result, for ``result.plot()``.

        Returns:
            For one image an ``ImageResult`` (a sequence of ``FaceResult``, one per face); for a list, a list of
            them in input order. An unreadable image gives a result with ``error`` set; no face gives an empty
            result with ``no_face`` true. Neither raises.
        """
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        items = (_item(x, i, channels) for i, x in enumerate(batch))
        results = list(self.predict_stream(items, keep_images=keep_images))
        return results[0] if single else results

    def predict_stream(self, items: Iterable[Item], keep_images: bool = False) -> Iterator[ImageResult]:
        """Predict on a stream of items, yielding results in input order.

        At most ``batch_size`` crops and ``batch_size`` items are held at a time, so memory stays flat on a video
        of any length.
        """
        pending: list[_Prepared] = []
        n_crops = 0
        planned = self._plan(items)
        for item, found, crops in _in_order(lambda job: self._prepare(*job, keep_images), planned, self.workers):
            n_crops += len(found)
            pending.append((item, found, crops))
            if n_crops >= self.batch_size or len(pending) >= self.batch_size:
                yield from self._flush(pending, keep_images)
                pending, n_crops = [], 0
        yield from self._flush(pending, keep_images)

    def _plan(self, items: Iterable[Item]) -> Iterator[_Planned]:
        """Give each video or webcam frame its key frame (every ``detect_every``-th frame of a source) and its offset
        from it; photos, and every frame when ``detect_every`` is 1, detect on their own."""
        source, count, key = None, 0, None
        for item in items:
            if self.detect_every == 1 or item.frame is None or item.image is None or item.error is not None:
                yield item, None, 0
                continue
            if item.source != source:
                source, count, key = item.source, 0, None
            offset = count % self.detect_every
            if offset == 0:
                key = KeyFrame(key, self.detect_every)
            assert key is not None
            yield item, key, offset
            count += 1

    def _prepare(self, item: Item, key: KeyFrame | None, offset: int, keep: bool) -> _Prepared:
        """Read (if given by path), detect and crop one item; an unreadable file becomes its error. A frame with a
        ``key`` frame is cropped where the key frame's faces are expected ``offset`` frames later."""
        if key is not None:
            assert item.image is not None  # _plan gives key frames only to decoded frames
            found = key.detect(self.detector, item.image) if offset == 0 else key.faces_at(offset)
            size = self.info.preprocess.input_size
            return item, found, crop_faces(item.image, found, size, self.margin, self.align, self.shift)
        if item.error is None and item.image is None and item.path is not None:
            try:
                photo = ScaledPhoto.read(item.path)
                if keep or self.landmarker is not None or not self.decode_at_scale:
                    item = replace(item, image=photo.decode(1))  # the whole picture is needed
                else:
                    size = self.info.preprocess.input_size
                    return (item, *photo_faces(photo, self.detector, size, self.margin, self.align, self.shift))
            except AffectlabError as exc:
                return replace(item, error=str(exc)), [], None
        if item.image is None or item.error is not None:
            return item, [], None
        found = self.detector.detect(item.image)
        return (
            item,
            found,
            crop_faces(item.image, found, self.info.preprocess.input_size, self.margin, self.align, self.shift),
        )

    def _flush(self, pending: list[_Prepared], keep: bool) -> Iterator[ImageResult]:
        chunks = [c for _, _, c in pending if c is not None and len(c)]
        outputs = self._run(np.concatenate(chunks)) if chunks else {}
        offset = 0
        for item, found, _ in pending:
            faces = [
                FaceResult.from_outputs(
                    outputs, offset + i, d.box, self.info.class_names, d.landmarks, self.min_confidence
                )
                for i, d in enumerate(found)
            ]
            offset += len(found)
            if self.landmarker is not None and item.image is not None:
                meshes = self.landmarker(item.image, found)
                for face, mesh in zip(faces, meshes):
                    face.mesh = mesh
                if self.eye_landmarker is not None:
                    for face, eyes in zip(faces, self.eye_landmarker(item.image, meshes)):
                        face.eyes = eyes
            yield ImageResult(item.source, faces, item.frame, item.time_s, item.error, item.image if keep else None)

    def _run(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        parts = [self.backend.run(crops[s : s + self.batch_size]) for s in range(0, len(crops), self.batch_size)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _in_order(work: Callable[[_T], _R], items: Iterable[_T], workers: int) -> Iterator[_R]:
    """``map(work, items)`` on ``workers`` threads, in input order, with at most ``2 * workers`` items in flight
    (so memory stays flat on any number of inputs); ``workers`` 1 runs everything in the calling thread."""
    if workers <= 1:  # a webcam's frames, among others: none is read before the last is done
        yield from map(work, items)
        return
    iterator = iter(items)
    head = list(islice(iterator, 2))
    if len(head) < 2:  # one item (a served request): no threads to start
        yield from map(work, head)
        return
    items = chain(head, iterator)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="affectlab-prepare")
    pending: deque[Future[_R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def to_rgb(image: Any, channels: str = "rgb") -> np.ndarray:
    """A path, PIL image or numpy array as an RGB uint8 H x W x 3 array (see ``AffectPredictor.predict``)."""
    if isinstance(image, (str, Path)):
        return read_rgb(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image, without importing PIL
        width, height = image.size
        check_pixels(width, height, getattr(image, "filename", "") or "PIL image")  # before convert() decodes it
        try:
            return np.asarray(image.convert("RGB"))
        except Exception as exc:  # a lazily opened, corrupt file fails only here, in many ways
            raise AffectlabError(
                f"{getattr(image, 'filename', '') or 'PIL image'}: not a readable image ({exc})"
            ) from None
    if not isinstance(image, np.ndarray):
        raise AffectlabError(f"cannot predict on {type(image).__name__}; give a path, a PIL image or a numpy array")
    if channels not in ("rgb", "bgr"):
        raise AffectlabError(f"channels must be 'rgb' or 'bgr', got {channels!r}")
    if image.dtype != np.uint8:
        raise AffectlabError(f"numpy images must be uint8 (0-255), got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise AffectlabError(f"numpy images must be H x W, H x W x 3 or H x W x 4, got shape {image.shape}")
    image = image[:, :, :3]
    return np.ascontiguousarray(image[:, :, ::-1] if channels == "bgr" else image)


def _item(image: Any, index: int, channels: str) -> Item:
    name = str(image) if isinstance(image, (str, Path)) else getattr(image, "filename", "") or f"<image {index}>"
    if isinstance(image, (str, Path)):
        return Item(name, path=Path(image))  # read by the predictor, at the scales it needs
    try:
        return Item(name, to_rgb(image, channels))
    except AffectlabError as exc:
        if not isinstance(image, (str, Path)):
            raise  # a wrong type or shape is a programming error, not a bad file
        return Item(name, error=str(exc))


def load(
    path: str | Path | None = None,
    detector: str | FaceDetector = DEFAULT_DETECTOR,
    batch_size: int = DEFAULT_BATCH,
    margin: float | None = None,
    threads: int | None = None,
    align: bool = False,
    landmarks: bool = False,
    min_confidence: float | None = None,
    workers: int | None = None,
    decode_at_scale: bool = True,
    source: str | Path | None = None,
    detect_every: int = 1,
    eyes: bool = False,
) -> AffectPredictor:
    """Load a run folder, ``.pt`` checkpoint, ``.onnx`` file or named model as an ``AffectPredictor``.

    ``path`` None is the bundled ``affectlab-base``; a name from ``models.registry`` is its checked file.

    ``.onnx`` files run in ONNX Runtime (everything needed is in their metadata); anything else is read as an
    affectlab checkpoint and runs in PyTorch. ``threads`` sets the runtime's intra-op threads (default: the CPUs
    this process may use for ONNX Runtime, PyTorch's own setting otherwise). ``landmarks`` adds FaceMesh's 468
    points and head pose to every face (see ``AffectPredictor``). ``min_confidence`` labels faces
    below that calibrated top probability ``uncertain``. ``workers`` threads prepare the next photos while the
    model runs (default: the usable CPUs); ``decode_at_scale`` False decodes every photo in full (the path before
    issue 26, kept for comparisons). ``source`` is what the user called the model when ``path`` is a file made
    from it (a run folder's ONNX export): records, ``/health`` and messages name that, not the export.
    ``detect_every`` N runs the detector on every Nth video or webcam frame only (see ``AffectPredictor``).
    ``eyes`` adds iris points, eye openness and gaze to every face (and implies ``landmarks``).
    """
    path = resolve_model(path)
    if not path.exists():
        raise AffectlabError(f"{path}: model not found")
    backend: Backend = OnnxBackend(path, threads) if path.suffix.lower() == ".onnx" else TorchBackend(path, threads)
    if source is not None:
        backend.info = replace(backend.info, source=str(source))
    if backend.info.note:  # said once, when the model is loaded (predict, serve and Python scripts alike)
        log.warning("%s: %s", Path(backend.info.source).name, backend.info.note)
    return AffectPredictor(
        backend,
        detector=detector,
        batch_size=batch_size,
        margin=margin,
        align=align,
        landmarks=landmarks,
        min_confidence=min_confidence,
        workers=workers,
        decode_at_scale=decode_at_scale,
        detect_every=detect_every,
        eyes=eyes,
    )


def load_for(
    model: str | Path | None,
    config: PredictConfig,
    webcam: bool = False,
    batch_size: int | None = None,
    source: str | Path | None = None,
) -> AffectPredictor:
    """``load`` with a ``PredictConfig``'s detector, crop, threads, workers, key frames and batch size
    (``batch_size`` overrides it; ``source`` as for ``load``). A webcam gets one worker: frames read ahead would only wait, and
    be late when shown."""
    batch = batch_size or config.batch_for(webcam)
    return load(
        model,
        config.detector,
        batch,
        config.margin,
        config.threads,
        config.align,
        config.landmarks,
        config.min_confidence,
        1 if webcam else config.workers,
        source=source,
        detect_every=config.detect_every,
        eyes=config.eyes,
    )
