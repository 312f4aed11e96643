"""Batched model outputs as numpy arrays: softmax probabilities and valence/arousal."""

from __future__ import annotations

import numpy as np
import torch

from affectlab.data.transforms import Preprocess
from affectlab.models.affect_model import AffectModel
from affectlab.training.features import batched_inputs

__all__ = ["predict_images", "predict_features", "Outputs"]

Outputs = dict[str, np.ndarray]  # "probs": (N, 8) and/or "va": (N, 2)


def _to_numpy(out: dict[str, torch.Tensor]) -> Outputs:
    result: Outputs = {}
    if "expression" in out:
        result["probs"] = torch.softmax(out["expression"].float(), dim=1).cpu().numpy()
    if "va" in out:
        result["va"] = out["va"].float().cpu().numpy()
    return result


def _merge(chunks: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}


@torch.inference_mode()
def predict_images(
    model: AffectModel,
    images: np.ndarray,
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
    averaged = {k: sum(r[k] for r in results) / len(results) for k in results[0]} if results[0] else {}
    return _to_numpy(averaged)


@torch.inference_mode()
def predict_features(model: AffectModel, features: torch.Tensor) -> Outputs:
    model.eval()
    return _to_numpy(model.forward_head(features.to(next(model.parameters()).device)))
