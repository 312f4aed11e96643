"""From a model's raw heads to what everyone reads: expression probabilities, valence/arousal, and their
prediction sets and intervals.

The head's ``expression`` logits become ``probs`` (softmax, after dividing by the calibrated temperature) and
``va`` is clipped to ``VA_RANGE`` ([-1, 1]), here and only here: evaluation, the PyTorch inference backend and the
ONNX export's self-check all call these functions, and the exported graph applies the same ``head_outputs`` inside
it. The clip is a hard clamp, not a tanh, so a value already inside the range is returned bit for bit as before;
and it sits on this output path rather than in ``AffectModel.forward``, so training's loss still sees the raw head
and an out-of-range output keeps its gradient back towards the range. With a
conformal calibration, ``set`` (N x 8, bool) marks each face's prediction set and ``va_interval`` (N x 2 x 2:
valence then arousal, each ``[low, high]``) holds the intervals. A model without a calibration gives exactly
the outputs it gave before calibration existed.
"""

from __future__ import annotations

import numpy as np
import torch

from affectlab.data.samples import FaceArray
from affectlab.data.transforms import Preprocess, batched_inputs
from affectlab.labels import VA_RANGE
from affectlab.models.affect_model import AffectModel
from affectlab.models.meta import Calibration

__all__ = [
    "Outputs",
    "RawOutputs",
    "aps_scores",
    "head_outputs",
    "predict_features",
    "predict_images",
    "raw_features",
    "raw_images",
    "to_outputs",
]

Outputs = dict[str, np.ndarray]  # "probs": (N, 8), "set": (N, 8) bool, "va": (N, 2), "va_interval": (N, 2, 2)
RawOutputs = dict[str, torch.Tensor]  # the heads after the flip average: "expression" logits and/or "va"


def aps_scores(probs: torch.Tensor) -> torch.Tensor:
    """The adaptive-prediction-set score of every class: the probability of the classes more probable than it,
    plus its own. A face's set is the classes whose score is at most the conformal threshold."""
    more_probable = probs.unsqueeze(1) > probs.unsqueeze(2)  # [n, k, j]: class j is more probable than k
    # The mask as a float, not a bool, in the product: PT2E int8 quantizers (LiteRT) put an observer on every input
    # of a multiplication, and an observer cannot take a bool tensor.
    return (probs.unsqueeze(1) * more_probable.to(probs.dtype)).sum(dim=2) + probs


def head_outputs(out: RawOutputs, calibration: Calibration | None = None) -> dict[str, torch.Tensor]:
    """Logits to probabilities; flip TTA averages the logits before this step, never the probabilities.

    The temperature divides the (averaged) logits, so it never changes which class is most probable. A
    prediction set always holds the most probable class, even when the threshold is below its probability.
    """
    result: dict[str, torch.Tensor] = {}
    cal = calibration or Calibration()
    if "expression" in out:
        logits = out["expression"].float()
        if cal.temperature is not None:
            logits = logits / cal.temperature
        result["probs"] = torch.softmax(logits, dim=1)
        if cal.set_threshold is not None:
            scores = aps_scores(result["probs"])
            result["set"] = scores <= torch.clamp(scores.min(dim=1, keepdim=True).values, min=cal.set_threshold)
    if "va" in out:
        result["va"] = out["va"].float().clamp(*VA_RANGE)  # after the flip average; intervals centre on it
        if cal.va_halfwidth is not None:
            half = torch.tensor(cal.va_halfwidth, dtype=torch.float32)
            low, high = result["va"] - half, result["va"] + half
            result["va_interval"] = torch.stack([low, high], dim=-1).clamp(*VA_RANGE)
    return result


def to_outputs(raw: RawOutputs, calibration: Calibration | None = None) -> Outputs:
    """Raw heads to the numpy outputs users get, with or without a calibration (to score both)."""
    return {k: v.cpu().numpy() for k, v in head_outputs(raw, calibration).items()}


def _merge(chunks: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}


@torch.inference_mode()
def raw_images(
    model: AffectModel,
    images: FaceArray,
    preprocess: Preprocess,
    batch_size: int = 64,
    tta_flip: bool = False,
    channels_last: bool = True,
) -> RawOutputs:
    """The heads on uint8 NHWC images, on the model's device (a GPU after GPU training), returned on the CPU;
    with ``tta_flip`` logits and V/A are averaged over the mirrored image."""
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
    return {k: (sum((r[k] for r in others), first[k]) / len(results)).cpu() for k in first}


@torch.inference_mode()
def predict_images(
    model: AffectModel,
    images: np.ndarray,
    preprocess: Preprocess,
    batch_size: int = 64,
    tta_flip: bool = False,
    channels_last: bool = True,
    calibration: Calibration | None = None,
) -> Outputs:
    """What a user gets for uint8 NHWC face crops: see ``raw_images`` and ``head_outputs``."""
    return to_outputs(raw_images(model, images, preprocess, batch_size, tta_flip, channels_last), calibration)


@torch.inference_mode()
def raw_features(model: AffectModel, features: torch.Tensor) -> RawOutputs:
    model.eval()
    out = model.forward_head(features.to(next(model.parameters()).device))
    return {k: v.cpu() for k, v in out.items()}


def predict_features(model: AffectModel, features: torch.Tensor, calibration: Calibration | None = None) -> Outputs:
    return to_outputs(raw_features(model, features), calibration)
