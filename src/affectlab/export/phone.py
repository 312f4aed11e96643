"""Export a trained run for phones: LiteRT (``tflite``), ExecuTorch (``executorch``) and Core ML (``coreml``).

Every phone file takes ONE face crop as the camera gives it, uint8 RGB, N x S x S x 3 with N = 1 (Core ML: an
RGB image of S x S), and does the rest inside: the normalisation with the run's mean/std, the flip TTA when the
run was evaluated with it, the temperature, the softmax, the prediction sets and the V/A intervals
(``affectlab.export.graph.ExportGraph``, the module the ONNX export traces too). An app feeds the crop (cut with
the ``face_margin`` and ``face_shift`` stored in the metadata) and reads ``expression_probs`` (8), ``va`` (2) and,
for a calibrated run, ``prediction_set`` and ``va_interval``.

What the ONNX file carries (labels, crop and normalisation, temperature, set threshold, interval widths, flip TTA,
affectlab version) travels as the same JSON bundle (``ModelMeta.to_onnx``): in the file's own metadata where the
format has a place for it (LiteRT: a ``metadata`` entry named ``affectlab``; Core ML: ``user_defined_metadata``),
and in a JSON sidecar (``model.pte.json``) for ExecuTorch, whose ``.pte`` has none.

Each converter is an optional extra (``affectlab[litert]``, ``[executorch]``, ``[coreml]``); without it the
export stops with one line naming the extra. LiteRT and ExecuTorch files are run by their Python runtimes on
seeded crops before they are written and refused if they differ from PyTorch's evaluation by more than
``FP32_TOLERANCE``; a Core ML package cannot run on Linux, so it is checked by its spec (inputs, outputs, metadata).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from affectlab.atomic import atomic_write, write_json
from affectlab.errors import AffectlabError
from affectlab.models.meta import ModelMeta

__all__ = [
    "PHONE_EXTRAS",
    "PHONE_FORMATS",
    "PHONE_INPUT",
    "PHONE_INPUT_LAYOUT",
    "export_phone",
    "phone_bundle",
    "phone_runner",
    "read_phone_metadata",
    "read_sidecar",
    "sidecar_path",
]

log = logging.getLogger(__name__)

#: format -> (default file name, int8 default file name or None where the format has no int8 here).
PHONE_FORMATS: dict[str, tuple[str, str | None]] = {
    "tflite": ("model.tflite", "model-int8.tflite"),
    "executorch": ("model.pte", "model-int8.pte"),
    "coreml": ("model.mlpackage", None),
}
#: format -> (the converter's module in affectlab.export, the package it needs, the extra that installs it).
PHONE_EXTRAS: dict[str, tuple[str, str, str]] = {
    "tflite": ("affectlab.export.to_litert", "litert_torch", "litert"),
    "executorch": ("affectlab.export.to_executorch", "executorch", "executorch"),
    "coreml": ("affectlab.export.to_coreml", "coremltools", "coreml"),
}
PHONE_INPUT = "image"
PHONE_INPUT_LAYOUT = "NHWC uint8 RGB 0-255, batch 1; (x/255 - mean) / std is inside the model"
#: Seeded random crops that every fp32 phone export is run on before it is written.
CHECK_CROPS = 3


def sidecar_path(path: str | Path) -> Path:
    """The JSON file beside an export whose format has no metadata of its own (``model.pte`` -> ``model.pte.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The affectlab bundle stored beside ``path``."""
    side = sidecar_path(path)
    try:
        return dict(json.loads(side.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise AffectlabError(f"{side}: cannot read the model's metadata ({exc})") from None


def read_phone_metadata(fmt: str, path: str | Path) -> dict[str, Any]:
    """The affectlab bundle of a phone export: from the file's own metadata, or its sidecar (ExecuTorch)."""
    converter = _converter(fmt)
    return dict(converter.read_metadata(Path(path))) if converter.HAS_METADATA else read_sidecar(path)


def phone_runner(fmt: str, path: str | Path, threads: int | None = None) -> Any:
    """The format's Python runtime on ``path``: ``runner(uint8 1 x S x S x 3) -> {output name: array}``."""
    converter = _converter(fmt)
    if getattr(converter, "Runner", None) is None:
        raise AffectlabError(f"{path}: {converter.NAME} models cannot run here (only on Apple platforms)")
    return converter.Runner(Path(path), read_phone_metadata(fmt, path)["outputs"], threads)


def phone_bundle(meta: ModelMeta, quant: dict[str, Any], outputs: list[str], input_layout: str) -> dict[str, Any]:
    """The metadata a phone file carries: the ONNX bundle, with the phone input and the output names."""
    return {
        **dataclasses.replace(meta, export=quant).to_onnx(),
        "input": PHONE_INPUT,
        "input_layout": input_layout,
        "outputs": outputs,
        "demo_data": meta.trained_on_demo,
        **meta.card,
    }


def _converter(fmt: str) -> Any:
    module, package, extra = PHONE_EXTRAS[fmt]
    try:
        importlib.import_module(package)
    except ImportError:
        raise AffectlabError(
            f"--format {fmt} needs the optional package {package}: pip install 'affectlab[{extra}]'"
        ) from None
    return importlib.import_module(module)


def export_phone(
    source: Path,
    fmt: str,
    out: Path,
    int8: bool = False,
    calibration: str | Path | None = None,
    checkpoint_hash: str | None = None,
) -> Path:
    """Write ``source``'s model to ``out`` in the phone format ``fmt``, checked against PyTorch first."""
    from affectlab.export.graph import ExportGraph, output_names
    from affectlab.export.int8 import calibration_images
    from affectlab.models.checkpoint import load_checkpoint

    converter = _converter(fmt)
    model, meta = load_checkpoint(source)
    graph = ExportGraph(model, meta, pixels=converter.PIXELS).eval()
    names = output_names(model, meta)
    quant: dict[str, Any] = {"quantization": "none"}
    with tempfile.TemporaryDirectory(prefix="affectlab-phone-") as tmp:
        if int8:
            crops, described = calibration_images(calibration, meta.preprocess.input_size)
            made = converter.convert(graph, names, Path(tmp), crops)
            quant = {
                "quantization": converter.INT8_SCHEME,
                "calibration": described,
                "int8_check": _int8_check(model, meta, converter, made, names, crops),
            }
        else:
            made = converter.convert(graph, names, Path(tmp), None)
            _self_check(model, meta, converter, made, names)
        if checkpoint_hash is not None:
            quant[_hash_key()] = checkpoint_hash
        bundle = phone_bundle(meta, quant, names, converter.INPUT_LAYOUT)
        converter.embed(made, bundle)
        written = _move(made, out)
    if not converter.HAS_METADATA:
        write_json(sidecar_path(written), bundle)
    return written


def _hash_key() -> str:
    from affectlab.export.graph import CHECKPOINT_HASH_KEY

    return CHECKPOINT_HASH_KEY


def _move(made: Path, out: Path) -> Path:
    """The finished file (or Core ML's package folder) to ``out``, atomically: nothing half-written at ``out``."""
    if made.is_file():
        return atomic_write(out, lambda p: shutil.copyfile(made, p))
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copytree(made, staged, dirs_exist_ok=True)
        if out.exists():  # --overwrite was given (export_model refuses otherwise)
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staged.rename(out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return out


def _reference(model: Any, meta: ModelMeta, crops: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch's evaluation of ``crops``, named as the export's outputs."""
    from affectlab.models.outputs import predict_images
    from affectlab.runtime.backends import ONNX_OUTPUTS

    expected = predict_images(
        model, crops, meta.preprocess, tta_flip=meta.tta_flip, channels_last=False, calibration=meta.calibration
    )
    return {ONNX_OUTPUTS[key]: value for key, value in expected.items()}


def run_each(
    converter: Any, path: Path, names: list[str], crops: np.ndarray, threads: int | None = None
) -> dict[str, np.ndarray]:
    """The export's outputs for each crop (the phone files take one crop per call), stacked."""
    try:
        runner = converter.Runner(path, names, threads)
    except RuntimeError as exc:  # e.g. ExecuTorch's "Failed to load method forward": one line, not a traceback
        raise AffectlabError(
            f"{converter.NAME} export check failed: its runtime cannot load the file ({exc})"
        ) from None
    rows = [runner(crop[None]) for crop in crops]
    return {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}


def _self_check(model: Any, meta: ModelMeta, converter: Any, path: Path, names: list[str]) -> None:
    """Refuse a file whose outputs differ from PyTorch's evaluation (a format without a runtime here: its spec)."""
    from affectlab.export.graph import FP32_TOLERANCE

    if getattr(converter, "Runner", None) is None:
        converter.check_spec(path, names, meta)
        return
    size = meta.preprocess.input_size
    crops = np.random.default_rng(0).integers(0, 256, (CHECK_CROPS, size, size, 3), dtype=np.uint8)
    expected, got = _reference(model, meta, crops), run_each(converter, path, names, crops)
    for name, value in expected.items():
        if value.dtype == bool:  # a set member within rounding of the threshold may differ; the check is on probs
            continue
        diff = float(np.max(np.abs(got[name] - value)))
        if diff > FP32_TOLERANCE:
            raise AffectlabError(f"{converter.NAME} export check failed: {name} differs from PyTorch by {diff:.2e}")


def _int8_check(
    model: Any, meta: ModelMeta, converter: Any, path: Path, names: list[str], crops: np.ndarray
) -> dict[str, Any]:
    """int8 against PyTorch fp32 on the calibration crops, as for ONNX int8 (``int8.agreement_report``)."""
    from affectlab.export.int8 import agreement_report

    return agreement_report(
        _reference(model, meta, crops), run_each(converter, path, names, crops), kernel=converter.NAME
    )
