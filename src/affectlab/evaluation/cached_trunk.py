"""A frozen trunk's evaluation passes through the feature cache: the damaged faces of the robustness section and
the detected crops of the faces-in-scenes section.

A frozen trunk gives the same pooled features to every model built on it, so a study's tasks (classification and
regression on one trunk and split) need the trunk's forward pass once per face; the heads are all that differs.
On a frozen VGG16 the trunk is nearly all of the cost, so the second model's sections cost almost nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

import numpy as np

from affectlab.config import RunConfig
from affectlab.data.prepared import SplitData
from affectlab.data.samples import FaceArray, FaceSplit
from affectlab.evaluation.robustness import Scorer, subset_digest
from affectlab.models.meta import ModelMeta
from affectlab.models.outputs import RawOutputs, raw_features, to_outputs
from affectlab.runtime.backends import ModelInfo
from affectlab.training.datamodule import split_features
from affectlab.training.features import FeatureCache

__all__ = ["CachedTrunkBackend", "cached_heads", "feature_scorer"]


def cached_heads(cfg: RunConfig, result: Any, cache: FeatureCache, images: FaceArray, hashes: list[str]) -> RawOutputs:
    """The heads on the frozen trunk's pooled features of ``images``, whose rows the feature cache keys by
    ``hashes``: the trunk runs once per face for every model that shares it (a study's tasks)."""
    part = SplitData(
        ids=hashes, images=cast(np.ndarray, images), expression=np.zeros(len(hashes), np.int64),
        va=np.zeros((len(hashes), 2), np.float32), hashes=hashes,
    )  # fmt: skip
    pooled = split_features(cfg, part, result.model, result.preprocess, cache, result.backbone)
    return raw_features(result.model, pooled)


def feature_scorer(cfg: RunConfig, split: FaceSplit, result: Any, cache: FeatureCache) -> Scorer | None:
    """The robustness section's scorer for a frozen trunk whose features are cached (``cached_heads``).

    The rows of a damaged pass are keyed by the face's hash, the damage and the subset it was made with (the
    noise of a face depends on its place in the batch), so they are reused only for the very same pixels.
    """
    hashes = list(split.hashes)
    if len(hashes) != len(split):
        return None

    def score_faces(chosen: np.ndarray, images: FaceArray, what: str) -> RawOutputs:
        faces = [hashes[i] for i in chosen]
        if what != "clean":  # clean faces are the rows training cached
            tag = f"{what}|{subset_digest(faces)}"
            faces = [hashlib.sha1(f"{h}|{tag}".encode()).hexdigest() for h in faces]
        return cached_heads(cfg, result, cache, images, faces)

    return score_faces


class CachedTrunkBackend:
    """The faces-in-scenes section's runtime backend for a frozen trunk whose features are cached: each detected
    crop's pooled features are keyed by its pixels, so the models that share the trunk and the split (a study's
    tasks, whose crops are the same) run the trunk once per crop, and each model only its heads."""

    def __init__(self, cfg: RunConfig, result: Any, cache: FeatureCache, meta: ModelMeta) -> None:
        self.info = ModelInfo.of(meta, "evaluation", "pytorch (cached trunk features)")
        self._cfg, self._result, self._cache = cfg, result, cache

    def run(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        hashes = [hashlib.sha1(np.ascontiguousarray(c).tobytes()).hexdigest() for c in crops]
        raw = cached_heads(self._cfg, self._result, self._cache, crops, hashes)
        return to_outputs(raw, self.info.calibration)
