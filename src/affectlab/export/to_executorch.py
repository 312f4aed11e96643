"""ExecuTorch (``.pte``) for ``affectlab.export.phone``: ``torch.export`` lowered to XNNPACK, PyTorch's CPU backend
on Android and iOS; int8 with ExecuTorch's XNNPACK quantizer (static, per-channel weights), calibrated on face crops.

A ``.pte`` has no free-form metadata, so the bundle goes into the JSON sidecar (``model.pte.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HAS_METADATA", "INPUT_LAYOUT", "INT8_SCHEME", "NAME", "PIXELS", "Runner", "convert", "embed"]

NAME = "ExecuTorch"
PIXELS = "uint8-nhwc"
INPUT_LAYOUT = "NHWC uint8 RGB 0-255, batch 1; (x/255 - mean) / std is inside the model"
INT8_SCHEME = "int8-xnnpack-pt2e-static"
HAS_METADATA = False


def convert(graph: Any, names: list[str], tmp: Path, calibration: np.ndarray | None) -> Path:
    """Write ``graph`` as ``tmp/model.pte`` (int8 when ``calibration`` crops are given)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    graph = _batch_norm_1d_as_affine(graph)
    example = (graph.example(),)
    with torch.no_grad():
        program = torch.export.export(graph, example, strict=False)
        if calibration is not None:
            program = torch.export.export(_quantised(program, calibration), example, strict=False)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    out = tmp / "model.pte"
    out.write_bytes(lowered.buffer)
    return out


def _batch_norm_1d_as_affine(graph: Any) -> Any:
    """A copy of ``graph`` whose BatchNorm1d layers (``model.head_norm``) are the multiply-add they compute in eval.

    XNNPACK lowers a BatchNorm1d as a 1x1 depthwise convolution on an unsqueezed tensor; when the flip TTA runs the
    model twice, its layout pass refuses that convolution ("Attempting to convert non-NHWC compatible node to NHWC",
    executorch 1.5.1, seen on the face trunk's runs). The multiply-add is the same function and lowers as two
    element-wise ops.
    """
    import copy

    import torch

    class Affine(torch.nn.Module):
        scale: torch.Tensor
        shift: torch.Tensor

        def __init__(self, norm: torch.nn.BatchNorm1d) -> None:
            super().__init__()
            assert norm.running_var is not None and norm.running_mean is not None
            scale = torch.rsqrt(norm.running_var + norm.eps)
            if norm.weight is not None:
                scale = scale * norm.weight
            shift = -norm.running_mean * scale + (norm.bias if norm.bias is not None else 0.0)
            self.register_buffer("scale", scale.detach().clone())
            self.register_buffer("shift", shift.detach().clone())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale + self.shift

    graph = copy.deepcopy(graph)
    for name, module in list(graph.named_modules()):
        if isinstance(module, torch.nn.BatchNorm1d):
            parent, _, leaf = name.rpartition(".")
            setattr(graph.get_submodule(parent) if parent else graph, leaf, Affine(module).eval())
    return graph


def _quantised(program: Any, crops: np.ndarray) -> Any:
    """The PT2E flow: annotate with the XNNPACK quantizer, observe the calibration crops, convert."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(program.module(), quantizer)
    for crop in crops:
        prepared(torch.from_numpy(np.ascontiguousarray(crop[None])))
    return convert_pt2e(prepared)


def embed(path: Path, bundle: dict[str, Any]) -> None:
    """Nothing to embed: the caller writes the sidecar."""


class Runner:
    """ExecuTorch's Python runtime on a ``.pte`` file: ``runner(uint8 1 x S x S x 3) -> {output name: array}``."""

    def __init__(self, path: Path, names: list[str], threads: int | None = None) -> None:
        from executorch.runtime import Runtime

        self._names = names
        self._method = Runtime.get().load_program(Path(path)).load_method("forward")
        del threads  # the Python runtime's XNNPACK thread pool is process-wide, not per file

    def __call__(self, crop: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        outputs = self._method.execute([torch.from_numpy(np.ascontiguousarray(crop))])
        return {name: value.numpy() for name, value in zip(self._names, outputs, strict=True)}
