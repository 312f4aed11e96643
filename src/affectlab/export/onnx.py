"""Export a trained run to ONNX, self-describing, optionally with int8 weights.

The graph takes ``images`` (float32, N x 3 x S x S, normalised with the stored mean/std; N is dynamic) and returns
``expression_probs`` (softmax inside the graph, N x 8) and/or ``va`` (N x 2, clipped to [-1, 1] inside the graph),
as the model's task provides. A
calibrated model (``affectlab.models.meta.Calibration``) divides the logits by its temperature inside the graph
and also returns ``prediction_set`` (N x 8, bool) and/or ``va_interval`` (N x 2 x 2), computed by the same
``head_outputs`` as PyTorch.
When the run was evaluated with flip test-time augmentation (``train.tta_flip``), the graph does the same: it
averages the logits and V/A of each image and its mirror before the softmax, so the ONNX model gives the
figures that ``evaluate`` reports; ``tta_flip`` in the metadata says so.
Everything else a predictor needs (``ModelMeta``: task, class names, input size, mean/std, face margin, V/A range,
the calibration, the model config and the affectlab version) is written into ``metadata_props``, so a ``model.onnx`` alone is enough to
predict. An export is checked against PyTorch on random inputs before it is written.

``int8`` quantises the graph with ONNX Runtime (see ``affectlab.export.int8`` for why static QDQ with
calibration images is the default); the cost in accuracy is measured by ``benchmarks/predict.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from affectlab.atomic import atomic_write
from affectlab.errors import AffectlabError
from affectlab.export.graph import CHECKPOINT_HASH_KEY, FP32_TOLERANCE
from affectlab.export.phone import PHONE_FORMATS, export_phone
from affectlab.models.meta import ModelMeta
from affectlab.models.registry import named_model, resolve_model
from affectlab.runtime.backends import ONNX_INPUT, ONNX_METADATA_KEY, ONNX_OUTPUTS

__all__ = [
    "CHECKPOINT_HASH_KEY",
    "EXPORT_FORMATS",
    "FP32_TOLERANCE",
    "checkpoint_sha256",
    "export_loaded",
    "export_model",
    "export_onnx",
    "onnx_matches",
]

log = logging.getLogger(__name__)

#: Export formats as data: name -> (default file name, int8 default file name, None where int8 is not offered).
EXPORT_FORMATS: dict[str, tuple[str, str | None]] = {"onnx": ("model.onnx", "model-int8.onnx"), **PHONE_FORMATS}
OPSET = 18
INPUT_LAYOUT = "NCHW float32 RGB, (x/255 - mean) / std"


def checkpoint_sha256(path: str | Path) -> str:
    """The SHA-256 of a checkpoint file (a run folder: its ``model.pt``), as its exports record it."""
    path = Path(path)
    with open(path / "model.pt" if path.is_dir() else path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def export_model(
    run: str | Path | Any,
    format: str = "onnx",
    out: str | Path | None = None,
    int8: bool = False,
    quantization: str = "static",
    calibration: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a trained run as a self-describing model file, checked against PyTorch before it is written.

    This is ``affectlab.export`` (and ``affectlab.api.export``).

    Args:
        run: a run folder, a ``.pt`` checkpoint, a named model (``affectlab-base``), or the ``Run`` that
            ``affectlab.train`` returned.
        format: the file format: ``onnx``, or for phones ``tflite`` (LiteRT), ``executorch`` or ``coreml``
            (each needs its extra; see ``affectlab.export.phone``).
        out: the file to write (default: ``model.onnx``, or ``model-int8.onnx`` with ``int8``, in the run folder;
            for a named model ``NAME.onnx`` in the current folder; ``.tflite``, ``.pte``, ``.mlpackage`` likewise).
        int8: quantise to int8 (faster on a CPU; refused if it changes too many labels; not for ``coreml``).
        quantization: ``static`` (calibrated on face crops) or ``dynamic`` (ONNX only).
        calibration: a folder of face crops for static quantisation, or a run folder for its validation faces
            (default: the run's own validation faces when its data is where it trained, else synthetic faces).
        overwrite: replace an existing ``out``. Without it an existing file is refused: it may be an export made
            with other settings (a study's run already holds its ``model.onnx``), or a file that is not ours.

    Returns:
        The path written.

    Example:
        >>> path = affectlab.export("runs/best", int8=True, calibration="face-crops/")
        >>> predictor = affectlab.load(path)
    """
    if format not in EXPORT_FORMATS:
        raise AffectlabError(f"unknown export format {format!r}; available: {', '.join(EXPORT_FORMATS)}")
    default = EXPORT_FORMATS[format][1 if int8 else 0]
    if default is None:
        raise AffectlabError(f"--int8 is not available for --format {format}; available for: {_int8_formats()}")
    named = named_model(run) if isinstance(run, str) else None
    source = resolve_model(getattr(run, "path", run))  # a Run, without importing the training code
    if out is None and named is not None:  # never into the installed package: beside the user, as NAME.onnx
        out = Path(default.replace("model", named.name, 1))
    elif out is None:
        folder = source if source.is_dir() else source.parent
        out = folder / default
    out = Path(out)
    if out.is_dir() and format != "coreml":  # a Core ML package is a folder
        raise AffectlabError(f"{out}: is a folder; --out takes a file name such as {Path(default).name}")
    if out.exists() and not overwrite:
        if format == "onnx" and not int8 and _is_export_of(out, source):  # e.g. made by predict on first use
            log.info("%s: already the export of %s", out, source)
            return out
        raise AffectlabError(f"{out}: exists; pass --overwrite to replace it")
    if int8 and calibration is None and source.is_dir():
        from affectlab.export.int8 import run_data_available

        if run_data_available(source):
            calibration = source  # the faces the model was selected on
    if format != "onnx":
        return export_phone(source, format, out, int8, calibration, checkpoint_hash=checkpoint_sha256(source))
    return export_onnx(source, out, int8=int8, quantization=quantization, calibration=calibration)


def _int8_formats() -> str:
    return ", ".join(name for name, files in EXPORT_FORMATS.items() if files[1] is not None)


def _is_export_of(out: Path, source: Path) -> bool:
    checkpoint = source / "model.pt" if source.is_dir() else source
    if not checkpoint.is_file():
        return False
    return onnx_matches(out, checkpoint, checkpoint_sha256(checkpoint), trust_time=False)


def export_onnx(
    source: str | Path,
    out: str | Path,
    int8: bool = False,
    quantization: str = "static",
    calibration: str | Path | None = None,
    checkpoint_hash: str | None = None,
) -> Path:
    """Write ``source``'s model to ``out`` as ONNX with metadata; with ``int8``, quantised (``static``/``dynamic``).

    ``calibration`` is a folder of face crops for static quantisation (default: synthetic demo faces).
    ``checkpoint_hash`` is the checkpoint's SHA-256 when the caller has it already (else it is computed).
    """
    from affectlab.export.int8 import check_mode
    from affectlab.models.checkpoint import load_checkpoint

    if int8:
        check_mode(quantization)
    model, meta = load_checkpoint(source)
    digest = checkpoint_hash or checkpoint_sha256(source)
    return export_loaded(model, meta, out, int8, quantization, calibration, checkpoint_hash=digest)


def export_loaded(
    model: Any,
    meta: ModelMeta,
    out: str | Path,
    int8: bool = False,
    quantization: str = "static",
    calibration: str | Path | None = None,
    checkpoint_hash: str | None = None,
) -> Path:
    """:func:`export_onnx` for a model already in memory with its metadata (``checkpoint_meta``); give
    ``checkpoint_hash`` (``checkpoint_sha256``) when the model is also saved as a checkpoint."""
    import onnx

    from affectlab.export.int8 import check_mode, quantize

    if int8:
        check_mode(quantization)
    model = model.eval()
    proto = _export_graph(model, meta)
    with tempfile.TemporaryDirectory(prefix="affectlab-export-") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        onnx.save(proto, str(fp32))
        _self_check(model, fp32, meta)
        quant: dict[str, Any] = {"quantization": "none"}
        if int8:
            fp32, quant = quantize(fp32, Path(tmp), quantization, meta.preprocess, calibration)
        proto = onnx.load(str(fp32))
    if checkpoint_hash is not None:
        quant = {**quant, CHECKPOINT_HASH_KEY: checkpoint_hash}
    _set_metadata(
        proto,
        {
            **dataclasses.replace(meta, export=quant).to_onnx(),
            "input": ONNX_INPUT,
            "input_layout": INPUT_LAYOUT,
            "demo_data": meta.trained_on_demo,
            **meta.card,  # the bundled model's data and test metrics, for the card of its ONNX file
        },
    )
    onnx.checker.check_model(proto)
    return atomic_write(out, lambda p: onnx.save(proto, str(p)))


def onnx_matches(onnx_path: Path, checkpoint: Path, digest: str, trust_time: bool = True) -> bool:
    """Whether ``onnx_path`` is the fp32 export of ``checkpoint`` (whose SHA-256 is ``digest``).

    Exports that record no checkpoint hash (before this release) count when they are no older than the
    checkpoint (with ``trust_time``): a study writes ``model.onnx`` after its final ``model.pt``.
    """
    if not onnx_path.is_file():
        return False
    bundle = _onnx_bundle(onnx_path)
    if bundle is None or bundle.get("quantization", "none") != "none":
        return False
    recorded = bundle.get(CHECKPOINT_HASH_KEY)
    if recorded is not None:
        return bool(recorded == digest)
    return trust_time and onnx_path.stat().st_mtime >= checkpoint.stat().st_mtime


def _onnx_bundle(path: Path) -> dict[str, Any] | None:
    """The affectlab metadata of an ONNX file, or None when it has none or cannot be read."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
        meta = {p.key: p.value for p in proto.metadata_props}
        bundle = json.loads(meta[ONNX_METADATA_KEY])
    except Exception:  # a corrupt, foreign or half-copied file is simply not a usable export
        return None
    return bundle if isinstance(bundle, dict) else None


def _export_graph(model: Any, meta: ModelMeta) -> Any:
    """Trace the model with a dynamic batch axis; the flip average (with ``tta_flip``), the temperature, the
    softmax, the prediction sets and the V/A intervals are all in the graph."""
    import torch

    from affectlab.export.graph import ExportGraph, output_names

    wrapper = ExportGraph(model, meta)
    names = output_names(model, meta)
    example = (wrapper.example(batch=2),)  # batch 2: a batch of 1 would be specialised away
    _quiet_exporter_logs()
    program = torch.onnx.export(
        wrapper,
        example,
        None,
        dynamo=True,
        input_names=[ONNX_INPUT],
        output_names=names,
        opset_version=OPSET,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,
        verbose=False,
    )
    assert program is not None  # dynamo=True returns the program; only the legacy exporter returns None
    return program.model_proto


def _quiet_exporter_logs() -> None:
    # The exporter reports each step at INFO level; affectlab's CLI shows its own progress instead.
    for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _self_check(model: Any, path: Path, meta: ModelMeta) -> None:
    """Refuse to write an export whose outputs differ from PyTorch's evaluation: a wrong graph must never reach
    users. The reference is ``predict_images``, the code ``evaluate`` scores with, on random uint8 crops."""
    from affectlab.models.outputs import predict_images
    from affectlab.runtime.backends import _make_session

    size = meta.preprocess.input_size
    crops = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    expected = predict_images(
        model, crops, meta.preprocess, tta_flip=meta.tta_flip, channels_last=False, calibration=meta.calibration
    )
    images = meta.preprocess.normalise_numpy(crops)
    session = _make_session(path, None)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {ONNX_INPUT: images})))
    for key, value in expected.items():
        if value.dtype == bool:  # a set member within rounding of the threshold may differ; the check is on probs
            continue
        diff = float(np.max(np.abs(got[ONNX_OUTPUTS[key]] - value)))
        if diff > FP32_TOLERANCE:
            raise AffectlabError(f"ONNX export check failed: {ONNX_OUTPUTS[key]} differs from PyTorch by {diff:.2e}")


def _set_metadata(proto: Any, bundle: dict[str, Any]) -> None:
    """The whole bundle under one key, plus each field under its own key for tools that read single values."""
    flat = {
        ONNX_METADATA_KEY: bundle,
        **{k: bundle[k] for k in ("task", "class_names", "quantization", "tta_flip")},
        **{k: bundle["preprocess"][k] for k in ("input_size", "mean", "std", "face_margin", "face_shift")},
        "affectlab_version": bundle["affectlab_version"],
    }
    del proto.metadata_props[:]
    for key, value in flat.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    proto.doc_string = "affectlab facial affect model; see metadata_props['affectlab']"
