"""Gradual unfreezing as a callback, so the model itself knows nothing about the schedule."""

from __future__ import annotations

import lightning as L

from affectlab.models.affect_model import AffectModel

__all__ = ["UnfreezeTrunk"]


class UnfreezeTrunk(L.Callback):
    """Train the head alone for ``epoch`` epochs, then release the trunk (its parameters are already in the
    optimiser at the backbone learning rate, so nothing has to be rebuilt)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model: AffectModel = pl_module.model  # type: ignore[assignment]  # AffectLitModule's network
        model.freeze_trunk(trainer.current_epoch < self.epoch)
