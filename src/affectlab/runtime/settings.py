"""``PredictConfig``: how faces are found, cropped, batched and smoothed, for every front end alike.

``affectlab predict``, ``affectlab.predict``, ``affectlab serve`` (and its web page) and the Ray engine all take
this one object, so a default is written once (here) and a value is checked once, when the config is made. It
imports nothing heavy, so a front end can check its values before torch or OpenCV are loaded. Messages name the
command-line flags, since that is where most values come from; the Python keywords have the same names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from affectlab.errors import AffectlabError

__all__ = ["BACKENDS", "DEFAULT_DETECTOR", "ENGINES", "PredictConfig", "split_options"]

#: The detector used when none is named (``auto``: yuface where installed, else haar; see ``runtime.faces``).
DEFAULT_DETECTOR = "auto"
#: Where ``predict`` runs: this process, or a Ray Data pipeline writing Parquet.
ENGINES = ("local", "ray")
#: Which runtime runs a run folder or checkpoint: ``auto`` (ONNX Runtime, from the run's ONNX export, unless a CUDA
#: GPU serves PyTorch better; see ``export.runtime_model``), ``torch`` or ``onnx``.
BACKENDS = ("auto", "torch", "onnx")
#: Face crops per model call unless ``batch_size`` is given: a batch of 32 costs far less than 32 single calls.
DEFAULT_BATCH = 32


@dataclass(frozen=True)
class PredictConfig:
    """Prediction settings shared by the CLI, the Python API, the HTTP service, its page and the Ray engine.

    Args:
        detector: ``auto``, ``yuface``, ``haar`` or ``none`` (each image is one face crop), or a ``FaceDetector``.
        margin: border added around each detected face, as a fraction of its box side (default: the model's).
        align: rotate each face so that its eyes are level before cropping (detectors with landmarks only).
        batch_size: face crops per model call (default 32; 1 when a webcam is read, so that no frame waits).
        every: on video, process every Nth frame.
        smooth: on video, average each face's outputs over its last N processed frames.
        detect_every: on video and webcam, run the face detector on every Nth processed frame only; in the frames
            in between each face is cropped where its motion puts it (faster; a new face waits for the next one).
        threads: runtime threads (default: the usable CPUs for ONNX Runtime, PyTorch's own setting otherwise).
        engine: ``local`` (this process) or ``ray`` (a Ray Data pipeline that writes a Parquet file).
        shard: ``(I, N)``: only the I-th (from 0) of N contiguous parts of the inputs, for job arrays.
        address: the Ray cluster to join with ``engine="ray"`` (``auto``: the running one; default: a local Ray).
        landmarks: also run FaceMesh on each face: 468 3-D points and head pose (the Ray engine writes the pose
            columns, as the CSV has them).
        min_confidence: label a face ``uncertain`` when its calibrated top probability is below this (its
            probabilities are kept).
        backend: ``auto`` (default), ``torch`` or ``onnx``: the runtime for a run folder or ``.pt`` checkpoint
            (``auto``: ONNX Runtime on its ONNX export, made on first use; PyTorch on a CUDA GPU unless ONNX
            Runtime has its CUDA provider). An ``.onnx`` file always runs in ONNX Runtime.
        workers: threads that decode and detect the next photos while the model runs on the current ones
            (default: the CPUs this process may use; 1: one after another). Records keep the input order.
        eyes: also run MediaPipe Iris on both eyes of each face: iris points, eye openness, gaze and, on video,
            blinks per face track (implies ``landmarks``; the Ray engine, which reads images, has no blinks).

    Raises:
        AffectlabError: on a value that cannot work, naming its flag, when the config is made.
    """

    detector: Any = DEFAULT_DETECTOR
    margin: float | None = None
    align: bool = False
    batch_size: int | None = None
    every: int = 1
    smooth: int = 1
    detect_every: int = 1
    threads: int | None = None
    engine: str = "local"
    shard: tuple[int, int] | None = None
    address: str | None = None
    landmarks: bool = False
    min_confidence: float | None = None
    backend: str = "auto"
    workers: int | None = None
    eyes: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "every", "smooth", "detect_every", "threads", "workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise AffectlabError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.margin is not None and not (math.isfinite(self.margin) and 0 <= self.margin <= 2):
            raise AffectlabError(f"--margin must be between 0 and 2, got {self.margin}")
        if self.backend not in BACKENDS:
            raise AffectlabError(f"--backend {self.backend}: use one of {', '.join(BACKENDS)}")
        if self.engine not in ENGINES:
            raise AffectlabError(f"--engine {self.engine}: use one of {', '.join(ENGINES)}")
        if self.address is not None and self.engine != "ray":
            raise AffectlabError("--address is for --engine ray")
        if self.min_confidence is not None and not (
            math.isfinite(self.min_confidence) and 0 <= self.min_confidence <= 1
        ):
            raise AffectlabError(f"--min-confidence must be a probability between 0 and 1, got {self.min_confidence}")
        if self.detect_every > 1 and self.engine == "ray":
            raise AffectlabError("--detect-every is for videos and webcams, which the Ray engine does not read")
        if self.shard is not None:
            index, count = self.shard
            if count < 1 or not 0 <= index < count:
                raise AffectlabError(f"--shard {index}/{count}: I must be from 0 to N-1 and N at least 1")

    def batch_for(self, webcam: bool) -> int:
        """The batch size to use: the one given, else 1 for a live camera (no frame waits) and 32 otherwise."""
        return self.batch_size or (1 if webcam else DEFAULT_BATCH)


def split_options(options: dict[str, Any], *kinds: type) -> list[dict[str, Any]]:
    """Sort keyword options among dataclasses by field name (one dict per kind); an unknown name is refused."""
    names = [{f.name for f in fields(kind)} for kind in kinds]
    unknown = sorted(set(options) - set().union(*names))
    if unknown:
        known = sorted(set().union(*names))
        raise AffectlabError(f"unknown option {unknown[0]!r}; known: {', '.join(known)}")
    return [{k: v for k, v in options.items() if k in group} for group in names]
