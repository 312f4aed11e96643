"""The module every export traces: the model, its flip TTA and its heads, optionally with the preprocessing.

One wrapper for every format, so that ONNX, LiteRT, ExecuTorch and Core ML compute the same thing as
``evaluate`` (``affectlab.models.outputs.predict_images``): the flip average of logits and V/A before the softmax
(with ``tta_flip``), the temperature, the softmax, the prediction sets and the V/A intervals (``head_outputs``).

``pixels`` says what the graph takes:

* ``normalised``: float32 N x 3 x S x S, already ``(x/255 - mean) / std`` (the ONNX file, which ONNX Runtime
  feeds from ``Preprocess.normalise_numpy``).
* ``uint8-nhwc``: uint8 N x S x S x 3 RGB, as a phone's camera frame or bitmap gives it (LiteRT, ExecuTorch);
  the cast, the layout change and the normalisation are inside the graph.
* ``rgb-nchw``: float N x 3 x S x S RGB in 0..255 (a Core ML image input, which hands the model its pixels as
  float planes); the normalisation is inside the graph.
"""

from __future__ import annotations

from typing import Any

import torch

from affectlab.models.meta import ModelMeta
from affectlab.models.outputs import head_outputs
from affectlab.runtime.backends import ONNX_OUTPUTS

#: Largest |export - PyTorch| difference accepted by every format's export self-check (probabilities and V/A).
FP32_TOLERANCE = 1e-4
#: Metadata key holding the SHA-256 of the checkpoint file an export was made from (``export.runtime_model``
#: uses a run folder's ``model.onnx`` only when it is the export of that folder's ``model.pt``).
CHECKPOINT_HASH_KEY = "checkpoint_sha256"

__all__ = ["PIXELS", "ExportGraph", "output_names"]

PIXELS = ("normalised", "uint8-nhwc", "rgb-nchw")


class ExportGraph(torch.nn.Module):
    """``model`` as its exports run it; ``forward`` returns the outputs in the order of ``output_names``."""

    mean: torch.Tensor  # buffers, registered only when the graph normalises pixels itself
    std: torch.Tensor

    def __init__(self, model: torch.nn.Module, meta: ModelMeta, pixels: str = "normalised") -> None:
        super().__init__()
        if pixels not in PIXELS:
            raise ValueError(f"pixels must be one of {PIXELS}, not {pixels!r}")
        self.inner, self.meta, self.pixels = model, meta, pixels
        if pixels != "normalised":  # as Preprocess.normalise computes it; absent from a graph that does not use it
            mean = torch.tensor(meta.preprocess.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
            std = torch.tensor(meta.preprocess.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
            self.register_buffer("mean", mean, persistent=False)
            self.register_buffer("std", std, persistent=False)
        self.eval()  # exporters trace the inference graph (BatchNorm statistics, no dropout)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.pixels == "uint8-nhwc":
            images = images.permute(0, 3, 1, 2).float()
        if self.pixels != "normalised":
            images = (images - self.mean) / self.std
        out = self.inner(images)
        if self.meta.tta_flip:  # the same average as evaluation: logits and V/A, before the softmax
            mirrored = self.inner(images.flip(-1))
            out = {k: (v + mirrored[k]) / 2 for k, v in out.items()}
        return tuple(head_outputs(out, self.meta.calibration).values())

    def example(self, batch: int = 1) -> torch.Tensor:
        """An input of the right type and shape for tracing."""
        size = self.meta.preprocess.input_size
        if self.pixels == "uint8-nhwc":
            return torch.zeros(batch, size, size, 3, dtype=torch.uint8)
        return torch.zeros(batch, 3, size, size)


def output_names(model: Any, meta: ModelMeta) -> list[str]:
    """The graph's output names (``expression_probs``, ``prediction_set``, ``va``, ``va_interval``), in order."""
    size = meta.preprocess.input_size
    with torch.no_grad():
        keys = head_outputs(model.eval()(torch.zeros(2, 3, size, size)), meta.calibration).keys()
    return [ONNX_OUTPUTS[key] for key in keys]
