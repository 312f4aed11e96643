"""Prediction records: one ``FaceResult`` per face, grouped per image (or video frame) in an ``ImageResult``.

Every consumer (the Python API, JSONL/CSV files, the HTTP service, annotated images) reads these two classes, so
the field names are defined once here. An image in which no face was found, or that could not be read, still
yields a record (``no_face`` / ``error``) so that an output file accounts for every input item.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from affectlab.labels import EMOTIONS, VA_RANGE
from affectlab.runtime.annotate import draw_result

__all__ = [
    "CSV_COLUMNS",
    "EYE_COLUMNS",
    "POSE_COLUMNS",
    "UNCERTAIN",
    "Box",
    "Detection",
    "Eyes",
    "FaceResult",
    "ImageResult",
    "Landmarks",
    "Mesh",
    "csv_row",
    "flat_record",
    "record_columns",
]

Box = tuple[int, int, int, int]  # x, y, width, height in pixels of the source image
#: Five (x, y) points: the eye on the image's left, the other eye, nose tip, mouth corner left, mouth corner right.
Landmarks = tuple[tuple[int, int], ...]

#: The label of a face whose calibrated top probability is below the caller's ``min_confidence``.
UNCERTAIN = "uncertain"

#: Fixed CSV columns, whatever the model's task: missing values are written as empty cells. Columns added later
#: come at the end, so a reader that counts columns keeps working.
CSV_COLUMNS: tuple[str, ...] = (
    "source",
    "frame",
    "time_s",
    "face",
    "track_id",
    "x",
    "y",
    "w",
    "h",
    "label",
    "confidence",
    *(f"p_{name}" for name in EMOTIONS),
    "valence",
    "arousal",
    "no_face",
    "error",
    "prediction_set",  # class names joined by "|"
    "valence_low",
    "valence_high",
    "arousal_low",
    "arousal_high",
)
#: Columns appended after ``CSV_COLUMNS`` when dense landmarks are asked for (``predict --landmarks``); the 468
#: points themselves are in the JSON lines only (a CSV row of 1,404 coordinates helps nobody).
POSE_COLUMNS: tuple[str, ...] = ("mesh_score", "yaw", "pitch", "roll")
#: Columns appended after ``POSE_COLUMNS`` when the eyes are asked for (``predict --eyes``): gaze in the camera's
#: and the head's frame (degrees), each eye's openness (the eye on the image's left first) and, on video, the
#: face track's blinks so far. Iris and eye-contour points are in the JSON lines only.
EYE_COLUMNS: tuple[str, ...] = (
    "gaze_yaw",
    "gaze_pitch",
    "eye_yaw",
    "eye_pitch",
    "openness_left",
    "openness_right",
    "blinks",
)


@dataclass(frozen=True)
class Detection:
    """One face found by a detector: its box, and its score and five landmarks where the detector gives them."""

    box: Box
    score: float | None = None
    landmarks: Landmarks | None = None


@dataclass(frozen=True)
class Mesh:
    """FaceMesh's answer for one face (``runtime.mesh``): its face score, and unless the score was too low
    (``rejected``), 468 (x, y, z) points in image pixels and the head pose in degrees (``runtime.headpose``)."""

    score: float
    points: np.ndarray | None = field(default=None, repr=False)
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None

    @property
    def rejected(self) -> bool:
        return self.points is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mesh_score": _round(self.score),
            "mesh_rejected": self.rejected,
            "yaw": _round(self.yaw, 2),
            "pitch": _round(self.pitch, 2),
            "roll": _round(self.roll, 2),
            "mesh": None if self.points is None else np.round(self.points, 2).tolist(),
        }


@dataclass(frozen=True)
class Eyes:
    """MediaPipe Iris's answer for the two eyes of one face (``runtime.eyes``), the eye on the image's left first:
    5 iris points (centre, then the rim) and 71 eye-contour points per eye in image pixels, each eye's openness,
    and the gaze in degrees (``runtime.gaze``). A face whose mesh was rejected has no eye points (``rejected``).
    On video, ``blinks`` counts the face track's blinks up to this frame (``runtime.blinks``)."""

    iris: np.ndarray | None = field(default=None, repr=False)
    contour: np.ndarray | None = field(default=None, repr=False)
    openness: tuple[float, float] | None = None
    gaze_yaw: float | None = None
    gaze_pitch: float | None = None
    eye_yaw: float | None = None
    eye_pitch: float | None = None
    blinks: int | None = None

    @property
    def rejected(self) -> bool:
        return self.iris is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "gaze_yaw": _round(self.gaze_yaw, 2),
            "gaze_pitch": _round(self.gaze_pitch, 2),
            "eye_yaw": _round(self.eye_yaw, 2),
            "eye_pitch": _round(self.eye_pitch, 2),
            "openness": None if self.openness is None else [_round(v, 4) for v in self.openness],
            "blinks": self.blinks,
            "iris": None if self.iris is None else np.round(self.iris, 2).tolist(),
            "eye_contours": None if self.contour is None else np.round(self.contour, 2).tolist(),
        }


def _in_va_range(value: Any) -> float:
    """A valence or arousal value clipped to ``VA_RANGE``. Models clip inside their outputs (PyTorch and the ONNX
    graph); this is the record path's guard for an ONNX file exported before they did, in the one place every
    backend's outputs become records (``predict``, the service, Ray)."""
    return float(np.clip(value, *VA_RANGE))


@dataclass
class FaceResult:
    """What the model says about one face.

    ``probs`` is None for a regression-only model, ``valence``/``arousal`` are None for a classification-only one.
    ``landmarks`` come from detectors that give them; ``track_id`` is set on video frames (the same face keeps
    its number from frame to frame). ``mesh`` is set when dense landmarks were asked for (``landmarks=True``),
    ``eyes`` when the eyes were (``eyes=True``).
    A calibrated model adds its conformal ``prediction_set`` (the emotions that hold the true one at the model's target coverage, most probable first) and the ``[low, high]`` intervals of
    valence and arousal. With ``min_confidence``, a face whose top probability is below it is labelled
    ``uncertain``; its probabilities are kept.
    """

    box: Box
    probs: np.ndarray | None = None
    valence: float | None = None
    arousal: float | None = None
    class_names: tuple[str, ...] = EMOTIONS
    landmarks: Landmarks | None = None
    track_id: int | None = None
    mesh: Mesh | None = None
    prediction_set: tuple[str, ...] | None = None
    valence_interval: tuple[float, float] | None = None
    arousal_interval: tuple[float, float] | None = None
    min_confidence: float | None = None
    eyes: Eyes | None = None

    @classmethod
    def from_outputs(
        cls,
        outputs: dict[str, np.ndarray],
        row: int,
        box: Box,
        class_names: tuple[str, ...] = EMOTIONS,
        landmarks: Landmarks | None = None,
        min_confidence: float | None = None,
    ) -> FaceResult:
        """Row ``row`` of a backend's outputs (``probs``, ``set``, ``va``, ``va_interval``; any may be absent)."""
        probs, chosen, va, intervals = (outputs.get(k) for k in ("probs", "set", "va", "va_interval"))
        members = None
        if probs is not None and chosen is not None:  # most probable first
            members = tuple(class_names[int(c)] for c in np.argsort(-probs[row], kind="stable") if chosen[row, c])
        return cls(
            box=box,
            landmarks=landmarks,
            probs=None if probs is None else probs[row],
            valence=None if va is None else _in_va_range(va[row, 0]),
            arousal=None if va is None else _in_va_range(va[row, 1]),
            class_names=class_names,
            prediction_set=members,
            valence_interval=None if intervals is None else (float(intervals[row, 0, 0]), float(intervals[row, 0, 1])),
            arousal_interval=None if intervals is None else (float(intervals[row, 1, 0]), float(intervals[row, 1, 1])),
            min_confidence=min_confidence,
        )

    @property
    def uncertain(self) -> bool:
        confidence = self.confidence
        return confidence is not None and self.min_confidence is not None and confidence < self.min_confidence

    @property
    def label(self) -> str | None:
        if self.probs is None:
            return None
        return UNCERTAIN if self.uncertain else self.class_names[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float | None:
        return None if self.probs is None else float(np.max(self.probs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "box": [int(v) for v in self.box],
            "landmarks": None if self.landmarks is None else [[int(x), int(y)] for x, y in self.landmarks],
            "label": self.label,
            "confidence": _round(self.confidence),
            "probs": None if self.probs is None else {n: _round(p) for n, p in zip(self.class_names, self.probs)},
            "valence": _round(self.valence),
            "arousal": _round(self.arousal),
            **({} if self.mesh is None else self.mesh.to_dict()),
            "prediction_set": None if self.prediction_set is None else list(self.prediction_set),
            "valence_interval": _interval(self.valence_interval),
            "arousal_interval": _interval(self.arousal_interval),
            **({} if self.eyes is None else self.eyes.to_dict()),
        }


@dataclass
class ImageResult(Sequence[FaceResult]):
    """All faces found in one image or video frame; iterating it yields the faces.

    ``frame``/``time_s`` are set for video frames. ``error`` is set when the item could not be read; ``no_face``
    is true when it was read but no face was found.
    """

    source: str
    faces: list[FaceResult] = field(default_factory=list)
    frame: int | None = None
    time_s: float | None = None
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)  # RGB, kept only where a caller wants .plot()

    @property
    def no_face(self) -> bool:
        return self.error is None and not self.faces

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, index: int) -> FaceResult:  # type: ignore[override]
        return self.faces[index]

    def __iter__(self) -> Iterator[FaceResult]:
        return iter(self.faces)

    def records(self) -> list[dict[str, Any]]:
        """Flat output records: one per face, or a single ``no_face``/``error`` record."""
        base: dict[str, Any] = {"source": self.source, "frame": self.frame, "time_s": _round(self.time_s, 3)}
        if self.error is not None or not self.faces:
            empty = {
                "face": None,
                "track_id": None,
                "box": None,
                "landmarks": None,
                "label": None,
                "confidence": None,
                "probs": None,
                "valence": None,
                "arousal": None,
                "prediction_set": None,
                "valence_interval": None,
                "arousal_interval": None,
            }
            return [{**base, **empty, "no_face": self.no_face, "error": self.error}]
        return [
            {**base, "face": i, **face.to_dict(), "no_face": False, "error": None} for i, face in enumerate(self.faces)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "frame": self.frame,
            "time_s": _round(self.time_s, 3),
            "faces": [f.to_dict() for f in self.faces],
            "no_face": self.no_face,
            "error": self.error,
        }

    def plot(self, image: np.ndarray | None = None) -> np.ndarray:
        """An RGB copy of the image with boxes, labels and a valence/arousal dot drawn on it."""
        image = self.image if image is None else image
        if image is None:
            raise ValueError("no image kept with this result; pass the image to plot()")
        return draw_result(image, self)


def record_columns(landmarks: bool = False, eyes: bool = False) -> tuple[str, ...]:
    """The columns of CSV and Parquet results: ``CSV_COLUMNS``, then ``POSE_COLUMNS`` with ``landmarks`` or
    ``eyes``, then ``EYE_COLUMNS`` with ``eyes``."""
    return CSV_COLUMNS + (POSE_COLUMNS if landmarks or eyes else ()) + (EYE_COLUMNS if eyes else ())


def flat_record(record: dict[str, Any], columns: tuple[str, ...] = CSV_COLUMNS) -> dict[str, Any]:
    """A ``records()`` entry with exactly the ``columns`` keys, in order: box and probabilities spread out,
    landmarks left out, None where a value is missing (the columns of CSV and Parquet results)."""
    box = record.get("box") or [None] * 4
    probs = record.get("probs") or {}
    chosen = record.get("prediction_set")
    valence, arousal = record.get("valence_interval") or [None] * 2, record.get("arousal_interval") or [None] * 2
    values = {
        **record,
        "x": box[0],
        "y": box[1],
        "w": box[2],
        "h": box[3],
        **{f"p_{name}": probs.get(name) for name in EMOTIONS},
        "prediction_set": None if chosen is None else "|".join(chosen),
        "valence_low": valence[0],
        "valence_high": valence[1],
        "arousal_low": arousal[0],
        "arousal_high": arousal[1],
        "openness_left": (record.get("openness") or [None] * 2)[0],
        "openness_right": (record.get("openness") or [None] * 2)[1],
    }
    return {c: values.get(c) for c in columns}


def csv_row(record: dict[str, Any], columns: tuple[str, ...] = CSV_COLUMNS) -> list[Any]:
    """A ``records()`` entry as a row in ``columns`` order (None becomes an empty cell)."""
    return ["" if value is None else value for value in flat_record(record, columns).values()]


def _interval(values: tuple[float, float] | None) -> list[float | None] | None:
    return None if values is None else [_round(values[0]), _round(values[1])]


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)
