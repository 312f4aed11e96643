"""Run by tests/test_distributed.py as a script: a 2-rank DDP fit on the CPU that records what each rank trained on.

Lightning starts rank 1 as a copy of this command, so everything here runs once per rank. Each rank writes the
sample indices its training loader gave it in every epoch to ``OUT/rank-R.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L

from affectlab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from affectlab.data.dataset import open_dataset
from affectlab.training.fit import train_model


class RecordSamples(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out, self.epochs = out, []  # type: ignore[var-annotated]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sampler = trainer.train_dataloader.sampler
        sampler.set_epoch(trainer.current_epoch)  # as Lightning's loop does before iterating
        self.epochs.append([int(i) for i in sampler])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        info = {"rank": trainer.global_rank, "world_size": trainer.world_size, "epochs": self.epochs}
        (self.out / f"rank-{trainer.global_rank}.json").write_text(json.dumps(info))


def fit_on_two_ranks(data: Path, out: Path, callback: L.Callback) -> None:
    """Two epochs of a small multitask ResNet18 on ``data`` with 2 DDP ranks on the CPU; the run goes to OUT/run."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = RunConfig(
        DataConfig(path=str(data)),
        ModelConfig(backbone="resnet18", weights="none", task="multitask", freeze=False, input_size=32),
        TrainConfig(epochs=2, batch_size=8, patience=5, seed=0, accelerator="cpu", devices=2, strategy="ddp"),
    )
    train_model(cfg, open_dataset(cfg.data, 32), out / "run", progress=False, callbacks=[callback])


def main() -> None:
    out = Path(sys.argv[2])
    fit_on_two_ranks(Path(sys.argv[1]), out, RecordSamples(out))


if __name__ == "__main__":
    main()
