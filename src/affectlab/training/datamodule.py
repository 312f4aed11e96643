"""What ``fit`` trains and validates on: a ``Dataset``'s train and val splits as Lightning loaders.

Two forms, chosen by the config alone, never by where the data lives: pooled trunk features (a frozen trunk and
no augmentation: computed once through the feature cache, then only the head trains), or images, decoded and
augmented per face on the loader side or (``train.augment_on: device``) shipped as uint8 and augmented per batch
on the device.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from affectlab.config import RunConfig
from affectlab.data.dataset import Dataset as FaceData
from affectlab.data.dataset import FaceSplit
from affectlab.data.face_tensors import FaceDataset, FaceToTensor, shuffled_loader
from affectlab.data.multi_source import source_infos
from affectlab.data.transforms import Preprocess
from affectlab.data.votes import class_targets
from affectlab.models.affect_model import AffectModel
from affectlab.models.weights import Backbone, resolve_backbone
from affectlab.training.datasets import feature_dataset, validation_loader
from affectlab.training.features import FeatureCache
from affectlab.training.source_mix import class_balanced_weights, epoch_draws, source_draw_weights

__all__ = ["FaceDataModule", "split_features", "uses_feature_cache"]


def uses_feature_cache(cfg: RunConfig) -> bool:
    t = cfg.train
    frozen = cfg.model.freeze and (cfg.model.branch is None or cfg.model.branch_freeze)
    return t.cache_features and frozen and not t.augment and t.unfreeze_at_epoch is None


def split_features(
    cfg: RunConfig,
    split: FaceSplit,
    model: AffectModel,
    preprocess: Preprocess,
    cache: FeatureCache,
    backbone: Backbone | None = None,
) -> torch.Tensor:
    """Pooled trunk features of one split, from the cache when the same data, trunk and preprocessing were seen."""
    backbone = backbone or resolve_backbone(cfg.model.backbone, cfg.model.weights)
    seed = cfg.train.seed if cfg.model.weights == "none" else None  # random trunks differ per seed
    parts: dict[str, object] = {"branch": cfg.model.branch} if cfg.model.branch else {}  # older keys stay valid
    key = cache.key(
        backbone=backbone.name, weights=backbone.label, seed=seed, preprocess=_cache_preprocess(preprocess), **parts
    )
    return cache.get_or_compute(key, split.hashes, model, split.images, preprocess, cfg.train.channels_last)


def _cache_preprocess(preprocess: Preprocess) -> dict[str, object]:
    # The key of features cached before Preprocess lost its unused ``extra`` field, so those caches stay valid.
    return {**preprocess.to_dict(), "extra": {}}


class FaceDataModule(L.LightningDataModule):
    """The train and val loaders of one fit, made when the module is built, so that data the run cannot use
    (a streamed split with a class-balanced sampler) is refused before training starts.

    ``generator`` drives the shuffling and sampling of a train split held in RAM; ``RandomState`` saves and
    restores it, so that a resumed run draws the batches the uninterrupted one would.
    """

    def __init__(
        self, cfg: RunConfig, data: FaceData, preprocess: Preprocess, features: dict[str, torch.Tensor]
    ) -> None:
        super().__init__()
        self.cfg, self.data, self.preprocess, self.features = cfg, data, preprocess, features
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        self._train, self._val = self._train_loader(), self._val_loader()

    @classmethod
    def build(
        cls,
        cfg: RunConfig,
        data: FaceData,
        model: AffectModel,
        preprocess: Preprocess,
        cache: FeatureCache | None,
        backbone: Backbone,
    ) -> FaceDataModule:
        """The data module of ``cfg``, with the train and val features computed now when it trains on features."""
        features: dict[str, torch.Tensor] = {}
        if uses_feature_cache(cfg):
            cache = cache or FeatureCache()
            for name in ("train", "val"):
                features[name] = split_features(cfg, data.splits[name], model, preprocess, cache, backbone)
        return cls(cfg, data, preprocess, features)

    @property
    def from_features(self) -> bool:
        return bool(self.features)

    @property
    def raw(self) -> bool:
        """uint8 images out of the loaders, augmented and normalised on the device (``DeviceInputs``)."""
        return not self.features and self.cfg.train.augment_on == "device"

    def _sample_weights(self) -> np.ndarray | None:
        infos = source_infos(self.data)
        train = self.data.splits["train"]
        balanced = self.cfg.train.sampler == "balanced"
        soft = train.soft if balanced else None
        target = class_targets(train) if soft is not None and soft.any() else None
        if len(infos) > 1:  # several sources: each drawn by its weight (and class-balanced inside it if asked)
            return source_draw_weights(infos, train.source, train.expression, balanced, target, soft)
        if not balanced:
            return None
        return class_balanced_weights(train.expression, target)

    def _epoch_draws(self) -> int | None:
        """Faces per epoch when a source fixes its draws (``per_epoch``); None: the training split's size."""
        return epoch_draws(source_infos(self.data), self.data.splits["train"].source)

    def train_dataloader(self) -> DataLoader:
        return self._train

    def val_dataloader(self) -> DataLoader:
        return self._val

    def _train_loader(self) -> DataLoader:
        t = self.cfg.train
        if self.features:
            train = feature_dataset(self.features["train"], self.data.splits["train"])
            return shuffled_loader(
                train, t.batch_size, t.num_workers, self.generator, self._sample_weights(), self._epoch_draws()
            )
        to_tensor = FaceToTensor(self.preprocess, augment=self.cfg.augment if t.augment else None, raw=self.raw)
        weights, draws = self._sample_weights(), self._epoch_draws()
        if draws is None:  # the loader as it always was (a converted dataset takes no epoch size)
            return self.data.train_loader(to_tensor, t.batch_size, t.num_workers, t.seed, self.generator, weights)
        return self.data.train_loader(
            to_tensor, t.batch_size, t.num_workers, t.seed, self.generator, weights, num_samples=draws
        )

    def _val_loader(self) -> DataLoader:
        val: Dataset
        if self.features:
            val = feature_dataset(self.features["val"], self.data.splits["val"])
        else:
            val = FaceDataset(self.data.splits["val"], FaceToTensor(self.preprocess, raw=self.raw))
        return validation_loader(val, self.cfg.train)
