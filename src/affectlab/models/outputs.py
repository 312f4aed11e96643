"""From a model's raw heads to what everyone reads: expression probabilities and valence/arousal.

The head's ``expression`` logits become ``probs`` (softmax) and ``va`` stays as it is, here and only here:
evaluation, the PyTorch inference backend and the ONNX export's self-check all call these functions, and the
exported graph applies the same ``head_outputs`` inside it.
"""

from __future__ import annotations

import numpy as np
import torch

from affectlab.data.samples import FaceArray
from affectlab.data.transforms import Preprocess, batched_inputs
from affectlab.models.affect_model import AffectModel

__all__ = ["Outputs", "head_outputs", "predict_features", "predict_images"]

Outputs = dict[str, np.ndarray]  # "probs": (N, 8) and/or "va": (N, 2)


def head_outputs(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Logits to probabilities; flip TTA averages the logits before this step, never the probabilities."""
    result: dict[str, torch.Tensor] = {}
    if "expression" in out:
        result["probs"] = torch.softmax(out["expression"].float(), dim=1)
    if "va" in out:
        result["va"] = out["va"].float()
    return result


def _to_numpy(out: dict[str, torch.Tensor]) -> Outputs:
    return {k: v.cpu().numpy() for k, v in head_outputs(out).items()}


def _merge(chunks: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}


@torch.inference_mode()
def predict_images(
    model: AffectModel,
    images: FaceArray,
    preprocess: Preprocess,
    batch_size: int = 64,
    tta_flip: bool = False,
    channels_last: bool = True,
) -> Outputs:
    """Predict on uint8 NHWC images on the model's device (a GPU after GPU training); with ``tta_flip`` logits and
    V/A are averaged over the mirrored image."""
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    device = next(model.parameters()).device
    passes = [False, True] if tta_flip else [False]
    results = []
    for flip in passes:
        batches = batched_inputs(images, preprocess, batch_size, channels_last, flip, device)
        results.append(_merge([model(b) for b in batches]))
    first, *others = results
    averaged = {k: sum((r[k] for r in others), first[k]) / len(results) for k in first}
    return _to_numpy(averaged)


@torch.inference_mode()
def predict_features(model: AffectModel, features: torch.Tensor) -> Outputs:
    model.eval()
    return _to_numpy(model.forward_head(features.to(next(model.parameters()).device)))
