"""Pooled-feature extraction and its on-disk cache.

With a frozen trunk and no train-time augmentation, the trunk computes the same features every epoch; doing it
once turns a 12-epoch study into one forward pass per image plus seconds of head training. Features are cached
on disk under a key of (split content, backbone, weights, input size, normalisation), so the second task of the
same backbone, and the next study on the same data, reuse them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from affectlab.atomic import atomic_write
from affectlab.config import cache_root
from affectlab.data.samples import FaceArray
from affectlab.data.transforms import Preprocess, batched_inputs
from affectlab.models.affect_model import AffectModel

__all__ = ["FeatureCache", "extract_features"]

log = logging.getLogger(__name__)
FEATURE_CACHE_VERSION = 1
#: Faces decoded at once when features are computed: 32 batches of 64.
CHUNK = 64 * 32


@torch.inference_mode()
def extract_features(
    model: AffectModel, images: FaceArray, preprocess: Preprocess, batch_size: int = 64, channels_last: bool = True
) -> torch.Tensor:
    was_training = model.training
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    device = next(model.parameters()).device
    chunks = [
        model.forward_features(b).float().cpu()
        for b in batched_inputs(images, preprocess, batch_size, channels_last, device=device)
    ]
    model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0)


class FeatureCache:
    """Content-addressed pooled features: one file per trunk configuration, one row per image content hash.

    Keying rows by image content (not by split) lets every split, seed and study on the same images share one
    forward pass per image; only images never seen before are computed.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else cache_root() / "features"

    def key(self, **parts: object) -> str:
        text = json.dumps({"v": FEATURE_CACHE_VERSION, **parts}, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:20]

    def _load(self, path: Path) -> tuple[list[str], torch.Tensor | None]:
        if not path.is_file():
            return [], None
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            return list(cached["hashes"]), cached["features"]
        except Exception:  # a damaged cache entry is recomputed, never trusted
            log.warning("ignoring unreadable feature cache %s", path)
            return [], None

    def get_or_compute(
        self,
        key: str,
        hashes: list[str],
        model: AffectModel,
        images: FaceArray,
        preprocess: Preprocess,
        channels_last: bool = True,
    ) -> torch.Tensor:
        path = self.root / f"{key}.pt"
        known, stored = self._load(path)
        row = {h: i for i, h in enumerate(known)}
        missing = [i for i, h in enumerate(hashes) if h not in row]
        if missing:
            # A chunk of faces at a time (a multiple of the batch, so the batches are those of one pass): a split
            # streamed from shards is never decoded whole into RAM.
            new = torch.cat(
                [
                    extract_features(
                        model, images[missing[start : start + CHUNK]], preprocess, channels_last=channels_last
                    )
                    for start in range(0, len(missing), CHUNK)
                ]
            )
            stored = new if stored is None else torch.cat([stored, new])
            for i in missing:
                row.setdefault(hashes[i], len(known))
                known.append(hashes[i])
            atomic_write(path, lambda p: torch.save({"hashes": known, "features": stored}, p))
        else:
            log.info("features from cache %s", path)
        assert stored is not None
        return stored[[row[h] for h in hashes]]
