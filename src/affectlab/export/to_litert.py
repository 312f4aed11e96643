"""LiteRT (``.tflite``, the format once called TensorFlow Lite) for ``affectlab.export.phone``, with ``litert-torch``
from ``torch.export``; int8 with its PT2E quantizer (static, per-channel weights), calibrated on face crops.

The bundle is stored in the flatbuffer's own ``metadata`` list, as an entry named ``affectlab`` holding the JSON
(the place TFLite's metadata tools use too); ``ai_edge_litert``'s interpreter runs the file here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HAS_METADATA", "INPUT_LAYOUT", "INT8_SCHEME", "NAME", "PIXELS", "Runner", "convert", "embed"]

NAME = "LiteRT"
PIXELS = "uint8-nhwc"
INPUT_LAYOUT = "NHWC uint8 RGB 0-255, batch 1; (x/255 - mean) / std is inside the model"
INT8_SCHEME = "int8-litert-pt2e-static"
HAS_METADATA = True
METADATA_NAME = "affectlab"


class _Named:
    """The graph with named outputs (a dict), so the LiteRT signature names them as the ONNX file does."""

    @staticmethod
    def wrap(graph: Any, names: list[str]) -> Any:
        import torch

        class Named(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.exported = graph

            def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
                return dict(zip(names, self.exported(image)))

        return Named().eval()


def convert(graph: Any, names: list[str], tmp: Path, calibration: np.ndarray | None) -> Path:
    import litert_torch
    import torch

    module = _Named.wrap(graph, names)
    example = (graph.example(),)
    options: dict[str, Any] = {}
    if calibration is not None:
        module, options["quant_config"] = _quantised(module, example, calibration)
    with torch.no_grad():
        edge = litert_torch.convert(module, example, **options)
    out = tmp / "model.tflite"
    edge.export(str(out))
    return out


def _quantised(module: Any, example: tuple[Any, ...], crops: np.ndarray) -> tuple[Any, Any]:
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    prepared = prepare_pt2e(torch.export.export(module, example, strict=False).module(), quantizer)
    for crop in crops:
        prepared(torch.from_numpy(np.ascontiguousarray(crop[None])))
    return convert_pt2e(prepared, fold_quantize=False), QuantConfig(pt2e_quantizer=quantizer)


def embed(path: Path, bundle: dict[str, Any]) -> None:
    """Add the bundle to the flatbuffer's ``metadata`` (name -> buffer), replacing an entry of the same name."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(bundle).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [entry]
    path.write_bytes(_pack(schema, model))


def _pack(schema: Any, model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(path: Path) -> dict[str, Any]:
    from ai_edge_litert import schema_py_generated as schema

    data = path.read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            return dict(json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()))
    raise KeyError(f"{path}: no {METADATA_NAME} metadata")


class Runner:
    """``ai_edge_litert``'s interpreter on a ``.tflite`` file: ``runner(uint8 1 x S x S x 3) -> {name: array}``."""

    def __init__(self, path: Path, names: list[str], threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._names = names
        self._interpreter = Interpreter(model_path=str(path), num_threads=threads or 1)
        self._runner = self._interpreter.get_signature_runner()
        (self._input,) = self._runner.get_input_details()

    def __call__(self, crop: np.ndarray) -> dict[str, np.ndarray]:
        out = self._runner(**{self._input: np.ascontiguousarray(crop)})
        return {name: out[name] for name in self._names}
