"""Model runtimes behind one interface: ``run(uint8 NHWC RGB crops) -> {"probs": (N, 8), "va": (N, 2)}``.

The predictor never knows whether a PyTorch checkpoint or an ONNX file answers, so the two give the same keys,
shapes and meaning (softmax probabilities, valence/arousal clipped to [-1, 1]; an ONNX file exported before the
clip was in the graph is clipped where records are made, ``FaceResult.from_outputs``). Each backend also carries
a ``ModelInfo`` (task, class names, preprocessing) read from the checkpoint bundle or from the ONNX metadata.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from affectlab.data.transforms import Preprocess
from affectlab.errors import AffectlabError
from affectlab.labels import EMOTIONS, VA_RANGE
from affectlab.models.meta import CALIBRATION_KEY, Calibration, ModelMeta

__all__ = [
    "DEMO_MODEL_NOTE",
    "ONNX_INPUT",
    "ONNX_METADATA_KEY",
    "ONNX_OUTPUTS",
    "Backend",
    "ModelInfo",
    "OnnxBackend",
    "TorchBackend",
]

#: The ONNX graph's input name and its output names per result key.
ONNX_INPUT = "images"
ONNX_OUTPUTS = {"probs": "expression_probs", "set": "prediction_set", "va": "va", "va_interval": "va_interval"}
#: metadata_props key holding the whole JSON bundle; the same values are also stored under their own keys.
ONNX_METADATA_KEY = "affectlab"
#: What a model trained on the demo data says, once, wherever it is used: predict, serve, the page and the API.
DEMO_MODEL_NOTE = (
    "trained on affectlab's synthetic demo faces (drawn cartoons), not on photos of people: "
    "its labels and valence/arousal on real faces mean nothing"
)


@dataclass(frozen=True)
class ModelInfo:
    """What a predictor must know about its model, whichever runtime runs it."""

    task: str
    preprocess: Preprocess
    class_names: tuple[str, ...] = EMOTIONS
    va_range: tuple[float, float] = VA_RANGE
    source: str = ""
    runtime: str = ""
    tta_flip: bool = False
    calibration: Calibration | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    note: str | None = None  # what a user must know before trusting the outputs (DEMO_MODEL_NOTE)

    @classmethod
    def of(cls, meta: ModelMeta, source: str, runtime: str) -> ModelInfo:
        """A model file's metadata, plus where it was read from and what runs it."""
        model = {} if meta.model is None else {"model": {**meta.model.__dict__}}
        version = {} if meta.affectlab_version is None else {"affectlab_version": meta.affectlab_version}
        return cls(
            task=meta.task,
            preprocess=meta.preprocess,
            class_names=meta.class_names,
            va_range=meta.va_range,
            source=source,
            runtime=runtime,
            tta_flip=meta.tta_flip,
            calibration=meta.calibration,
            extra={**model, **{k: v for k, v in meta.export.items() if k != "demo_data"}, **meta.card, **version},
            note=DEMO_MODEL_NOTE if meta.trained_on_demo else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "class_names": list(self.class_names),
            "va_range": list(self.va_range),
            "preprocess": self.preprocess.to_dict(),
            "source": self.source,
            "runtime": self.runtime,
            "tta_flip": self.tta_flip,
            CALIBRATION_KEY: None if self.calibration is None else self.calibration.to_dict(),
            **self.extra,
            **({"note": self.note} if self.note else {}),
        }


class Backend(Protocol):
    info: ModelInfo

    def run(self, crops: np.ndarray) -> dict[str, np.ndarray]: ...


class TorchBackend:
    """A checkpoint run by PyTorch eager, in channels-last memory format (faster convolutions on CPU), on a CUDA
    GPU where PyTorch has one (that is why ``--backend auto`` picks PyTorch there), else on the CPU.

    Predictions go through the evaluation code (``predict_images``), with the run's flip TTA, so that
    ``predict --detector none`` on a run's test crops gives exactly the outputs ``evaluate`` scores.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import torch

        from affectlab.models.checkpoint import load_checkpoint

        if threads:
            torch.set_num_threads(threads)  # process-wide in PyTorch; only when the caller asks for it
        model, meta = load_checkpoint(path)
        self._attach(model.to("cuda" if torch.cuda.is_available() else "cpu"), meta, str(path))

    @classmethod
    def from_model(cls, model: Any, meta: ModelMeta, source: str = "in memory") -> TorchBackend:
        """A model already in memory (one just trained) with its checkpoint metadata, on the device it is on;
        nothing is read from disk."""
        backend = cls.__new__(cls)
        backend._attach(model, meta, source)
        return backend

    def _attach(self, model: Any, meta: ModelMeta, source: str) -> None:
        import torch

        self.model = model.eval().to(memory_format=torch.channels_last)
        device = next(self.model.parameters()).device
        self.info = ModelInfo.of(meta, source, "pytorch" if device.type == "cpu" else f"pytorch ({device.type})")

    def run(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        from affectlab.models.outputs import predict_images

        crops = np.ascontiguousarray(crops)
        info = self.info
        return predict_images(
            self.model, crops, info.preprocess, max(1, len(crops)), info.tta_flip, calibration=info.calibration
        )


class OnnxBackend:
    """An exported ``.onnx`` file run by ONNX Runtime, with its CUDA provider where the installed ONNX Runtime has
    one (``onnxruntime-gpu``), else on the CPU; everything else comes from its metadata.

    The session is rebuilt on unpickling (only the path and thread count are pickled), so a predictor can be
    sent to worker processes.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path, self.threads = Path(path), threads
        self._session = _make_session(self.path, threads)
        try:
            metadata = self._session.get_modelmeta().custom_metadata_map
        except UnicodeDecodeError:
            raise AffectlabError(f"{self.path}: malformed metadata in the ONNX file (not UTF-8)") from None
        self.info = _info_from_metadata(metadata, self.path)
        self._outputs = [o.name for o in self._session.get_outputs()]

    def run(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        images = self.info.preprocess.normalise_numpy(crops)
        values = self._session.run(self._outputs, {ONNX_INPUT: images})
        by_name = dict(zip(self._outputs, values))
        return {key: by_name[name] for key, name in ONNX_OUTPUTS.items() if name in by_name}

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "threads": self.threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["threads"])  # type: ignore[misc]


def default_threads() -> int:
    """Intra-op threads: the CPUs this process may use (ORT's own default counts the whole machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _make_session(path: Path, threads: int | None):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    if not path.is_file():
        raise AffectlabError(f"{path}: model file not found")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    # Idle runtime threads sleep instead of spinning for the next call: spinning kept the second core busy between
    # calls (2 threads, batch 1, one crop: 6.4 CPU ms spinning, 3.8 not; benchmarks/serve_breakdown.py), the core
    # that decoding, detection and the HTTP service need while the model waits for its next input.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: ORT's warnings are not actionable for users
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():  # onnxruntime-gpu: the GPU, the CPU for the rest
        providers.insert(0, "CUDAExecutionProvider")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # ORT prints "EP Error" retries there, into our JSON lines
            return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for corrupt or foreign files
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise AffectlabError(f"{path}: not a loadable ONNX model ({first})") from None


def _info_from_metadata(meta: dict[str, str], path: Path) -> ModelInfo:
    if ONNX_METADATA_KEY not in meta:
        raise AffectlabError(f"{path}: ONNX file has no affectlab metadata; export it with 'affectlab export'")
    try:
        bundle = json.loads(meta[ONNX_METADATA_KEY])
        return ModelInfo.of(ModelMeta.from_onnx(bundle), str(path), "onnxruntime")
    except AffectlabError as exc:  # metadata newer than this release reads
        raise AffectlabError(f"{path}: {exc}") from None
    except Exception as exc:  # malformed JSON, missing or mistyped entries
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise AffectlabError(
            f"{path}: malformed affectlab metadata in the ONNX file ({type(exc).__name__}: {first})"
        ) from None
