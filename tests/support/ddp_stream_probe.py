"""Run by tests/test_shards.py as a script: a 2-rank DDP fit on the CPU over a converted dataset, recording how
LitData divided the streamed training split (Lightning starts rank 1 as a copy of this command)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L

from affectlab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from affectlab.data.prepared import prepare_data
from affectlab.training.fit import train_model


class RecordShares(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out, self.epochs = out, []  # type: ignore[var-annotated]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        env = trainer.train_dataloader.dataset.distributed_env
        self.epochs.append(
            {
                "world_size": env.world_size,
                "rank": env.global_rank,
                "batches": trainer.fit_loop.epoch_loop.batch_progress.current.completed,
            }
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        (self.out / f"rank-{trainer.global_rank}.json").write_text(json.dumps(self.epochs))


def main() -> None:
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    cfg = RunConfig(
        DataConfig(path=str(data)),
        ModelConfig(backbone="resnet18", weights="none", task="multitask", freeze=False, input_size=32),
        TrainConfig(epochs=2, batch_size=8, patience=5, seed=0, accelerator="cpu", devices=2, strategy="ddp"),
    )
    train_model(cfg, prepare_data(cfg.data, 32), out / "run", progress=False, callbacks=[RecordShares(out)])


if __name__ == "__main__":
    main()
