"""AffectLitModule: its loss, optimisers and validation metrics around a plain AffectModel.

The system (what to optimise and how) is kept apart from the network (what to compute), so the same
AffectModel is trained here, exported to ONNX and served without Lightning.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from affectlab.config import TrainConfig
from affectlab.labels import VA_RANGE
from affectlab.models.affect_model import AffectModel
from affectlab.training.device_inputs import DeviceInputs
from affectlab.training.losses import AffectLoss, ccc_loss, selection_score

__all__ = ["AffectLitModule", "Batch"]

#: inputs, expression (-1 = none), va (NaN = none), source index (0 for one dataset), class target (N, 8: one-hot,
#: crowd vote distribution, or zeros; ``data.votes.class_targets``)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
IndexedBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # + indices


class AffectLitModule(L.LightningModule):
    def __init__(
        self,
        model: AffectModel,
        train_config: TrainConfig,
        class_weights: torch.Tensor | None = None,
        from_features: bool = False,
        device_inputs: DeviceInputs | None = None,
        class_mask: torch.Tensor | None = None,
        sources: list[str] | None = None,
    ) -> None:
        """``class_weights`` is one row, or one per source; ``class_mask`` (sources x classes) what each source
        labels; ``sources`` the names of several sources, whose validation metrics are logged one by one."""
        super().__init__()
        self.model = model
        self.cfg = train_config
        self.from_features = from_features
        self.device_inputs = device_inputs  # uint8 batches augmented and normalised here, on the device
        self.loss = AffectLoss(train_config, class_weights, class_mask)
        self.sources = sources or []
        self._val_outputs: list[dict[str, torch.Tensor]] = []

    def forward(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.forward_head(inputs) if self.from_features else self.model(inputs)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.device_inputs is None:
            return batch
        return (self.device_inputs(batch[0], training=self.trainer.training), *batch[1:])

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        inputs, expression, va, source, target = batch
        loss = self.loss(self(inputs), expression, va, source, target)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(inputs))
        return loss

    def validation_step(self, batch: IndexedBatch, batch_idx: int) -> None:
        inputs, expression, va, source, target, index = batch
        out = self(inputs)
        # fp32 whatever the training precision: the epoch-end loss and metrics are computed from these.
        self._val_outputs.append(
            {
                **{k: v.detach().float() for k, v in out.items()},
                "expression_true": expression,
                "va_true": va,
                "source": source,
                "target": target,
                "index": index,
            }
        )

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        cat = self._gather_validation({k: torch.cat([o[k] for o in self._val_outputs]) for k in self._val_outputs[0]})
        self._val_outputs.clear()
        if len(self.sources) <= 1:
            metrics = self._metrics(cat)
        else:
            metrics = self._per_source_metrics(cat)
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name in ("val_loss", "val_accuracy"))

    def _metrics(self, cat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The validation loss and metrics of the samples in ``cat``, for the labels they have."""
        outputs = {k: v for k, v in cat.items() if k in ("expression", "va")}
        # Validation loss on the whole split at once, so the CCC term is not a mean of per-batch CCCs.
        metrics = {"val_loss": self.loss(outputs, cat["expression_true"], cat["va_true"], cat["source"], cat["target"])}
        accuracy = ccc = None
        labelled = cat["expression_true"] >= 0
        if "expression" in outputs and bool(labelled.any()):
            hits = outputs["expression"].argmax(1) == cat["expression_true"]
            accuracy = metrics["val_accuracy"] = hits[labelled].float().mean()
        with_va = ~torch.isnan(cat["va_true"]).any(1)
        if "va" in outputs and bool(with_va.any()):
            # Scored as predictions are (clipped to the V/A range); the loss above keeps the raw head's gradient.
            pred, true = outputs["va"][with_va].clamp(*VA_RANGE), cat["va_true"][with_va]
            rmse = ((pred - true) ** 2).mean(0).sqrt()
            metrics["val_rmse_valence"], metrics["val_rmse_arousal"] = rmse[0], rmse[1]
            ccc = metrics["val_ccc"] = 1.0 - ccc_loss(pred, true)
        metrics["val_score"] = torch.as_tensor(selection_score(accuracy, ccc))
        return metrics

    def _per_source_metrics(self, cat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every source's metrics (``val_accuracy/<source>``), their mean over sources (``.../combined``), and the
        selecting source's (``train.select_source``; default the first) under the plain names that early stopping
        and checkpointing monitor."""
        per: dict[str, dict[str, torch.Tensor]] = {}
        for index, name in enumerate(self.sources):
            rows = cat["source"] == index
            if bool(rows.any()):
                per[name] = self._metrics({k: v[rows] for k, v in cat.items()})
        combined = {
            key: torch.stack([m[key] for m in per.values() if key in m]).mean()
            for key in dict.fromkeys(k for m in per.values() for k in m)
        }
        select = self.cfg.select_source or self.sources[0]
        chosen = combined if select == "combined" else per.get(select, {})
        logged = dict(chosen)
        for name, metrics in [*per.items(), ("combined", combined)]:
            logged.update({f"{key}/{name}": value for key, value in metrics.items()})
        return logged

    def _gather_validation(self, local: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every rank's validation outputs, each sample once, in dataset order.

        Under DDP each rank validates a shard, and the distributed sampler pads the shards to equal length with
        repeated samples; selecting on one rank's shard, or counting the repeats, would score a different split.
        """
        if self.trainer.world_size <= 1:
            return local
        all_ranks: dict[str, torch.Tensor] = self.all_gather(local)  # type: ignore[assignment]
        gathered = {k: v.flatten(0, 1) for k, v in all_ranks.items()}  # (world, n, ...) -> (world*n, ...)
        order = torch.argsort(gathered["index"], stable=True)
        index = gathered["index"][order]
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]
        return {k: v[order][first] for k, v in gathered.items()}

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        head = [p for p in self.model.head_parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": head, "lr": cfg.lr}]
        trunk = list(self.model.trunk.parameters())
        if not self.from_features and (not self.model.trunk_frozen or cfg.unfreeze_at_epoch is not None):
            groups.append({"params": trunk, "lr": cfg.backbone_lr or cfg.lr})
        if not self.from_features and self.model.branch is not None and not self.model.branch_frozen:
            groups.append({"params": list(self.model.branch.parameters()), "lr": cfg.backbone_lr or cfg.lr})
        optimiser_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        optimiser = optimiser_cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "none":
            return optimiser
        # Optimizer steps of this rank over the whole fit, as Lightning counts them (devices, nodes, accumulation and
        # epochs included): sized from a single process's loader, a schedule would stop 1/world of the way.
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(cfg.warmup_epochs * total / max(1, cfg.epochs))
        scheduler: torch.optim.lr_scheduler.LRScheduler
        if cfg.scheduler == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimiser, max_lr=[g["lr"] for g in groups], total_steps=total, pct_start=max(warmup / total, 0.05)
            )
        else:

            def cosine_with_warmup(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, cosine_with_warmup)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
