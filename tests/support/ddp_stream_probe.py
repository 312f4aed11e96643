"""Run by tests/test_shards.py as a script: a 2-rank DDP fit on the CPU over a converted dataset, recording how
LitData divided the streamed training split (Lightning starts rank 1 as a copy of this command)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
from ddp_probe import fit_on_two_ranks  # the same fit as the raw-data probe (this script's folder is on sys.path)


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
    out = Path(sys.argv[2])
    fit_on_two_ranks(Path(sys.argv[1]), out, RecordShares(out))


if __name__ == "__main__":
    main()
