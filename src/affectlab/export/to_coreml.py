"""Core ML (``.mlpackage``) for ``affectlab.export.phone``, with ``coremltools`` from ``torch.export``.

The input is a Core ML image (``image``, RGB, S x S), which an iOS app fills from a ``CVPixelBuffer`` or
``CGImage``; Core ML hands the model its pixels as 0..255 floats, and the normalisation is inside the graph. The
bundle is in the package's ``user_defined_metadata`` (the whole bundle under ``affectlab``, the main fields under
their own keys). Core ML runs only on Apple platforms, so on Linux the package is checked by its spec.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HAS_METADATA", "INPUT_LAYOUT", "NAME", "PIXELS", "Runner", "check_spec", "convert", "embed"]

NAME = "Core ML"
PIXELS = "rgb-nchw"
INPUT_LAYOUT = "Core ML image, RGB, S x S; (x/255 - mean) / std is inside the model"
INT8_SCHEME = None
HAS_METADATA = True
#: The oldest OS the package runs on: iOS 16 / macOS 13 (ML programs with fp32 compute).
MIN_TARGET = "iOS16"
Runner = None  # no Core ML runtime on Linux


def convert(graph: Any, names: list[str], tmp: Path, calibration: np.ndarray | None) -> Path:
    import coremltools as ct
    import torch

    size = graph.meta.preprocess.input_size
    with torch.no_grad():
        program = torch.export.export(graph, (graph.example(),), strict=False).run_decompositions({})
    model = ct.convert(
        program,
        inputs=[ct.ImageType(name="image", shape=(1, 3, size, size), color_layout=ct.colorlayout.RGB)],
        outputs=[ct.TensorType(name=name) for name in names],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32,  # the parity the other formats give; FLOAT16 halves the size
        minimum_deployment_target=getattr(ct.target, MIN_TARGET),
    )
    out = tmp / "model.mlpackage"
    model.save(str(out))
    return out


def embed(path: Path, bundle: dict[str, Any]) -> None:
    import coremltools as ct

    model = ct.models.MLModel(str(path), skip_model_load=True)
    flat = _flat(bundle)
    for key, value in flat.items():
        model.user_defined_metadata[key] = value
    model.short_description = "affectlab facial affect model; see user_defined_metadata['affectlab']"
    model.version = str(bundle["affectlab_version"])
    # MLModel.save cannot write over the package it was read from (it clears the target first): save beside, swap
    embedded = path.with_name("embedded.mlpackage")
    model.save(str(embedded))
    shutil.rmtree(path)
    embedded.rename(path)


def _flat(bundle: dict[str, Any]) -> dict[str, str]:
    """As the ONNX metadata: the whole bundle under one key, the main fields under their own keys."""
    fields = {k: bundle[k] for k in ("task", "class_names", "quantization", "tta_flip", "outputs")}
    fields |= {k: bundle["preprocess"][k] for k in ("input_size", "mean", "std", "face_margin", "face_shift")}
    flat = {"affectlab": json.dumps(bundle), "affectlab_version": str(bundle["affectlab_version"])}
    return flat | {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}


def read_metadata(path: Path) -> dict[str, Any]:
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    return dict(json.loads(spec.description.metadata.userDefined["affectlab"]))


def check_spec(path: Path, names: list[str], meta: Any) -> None:
    """What can be checked without an Apple device: one RGB image input of the model's size, the outputs."""
    import coremltools as ct

    from affectlab.errors import AffectlabError

    spec = ct.utils.load_spec(str(path))
    inputs = list(spec.description.input)
    size = meta.preprocess.input_size
    ok = len(inputs) == 1 and inputs[0].type.WhichOneof("Type") == "imageType"
    ok = ok and (inputs[0].type.imageType.width, inputs[0].type.imageType.height) == (size, size)
    got = [o.name for o in spec.description.output]
    if not ok or got != names:
        raise AffectlabError(f"Core ML export check failed: inputs {inputs}, outputs {got} (expected {names})")
