"""Per-epoch metrics written to ``history.csv`` as training goes, one clean row per epoch."""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import lightning as L

from affectlab.atomic import write_text

__all__ = ["HISTORY_COLUMNS", "EpochLines", "HistoryCallback"]

HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_rmse_valence",
    "val_rmse_arousal",
    "val_ccc",
    "val_score",
    "lr",
    "seconds",
)


class HistoryCallback(L.Callback):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self._start = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows]}  # saved with each checkpoint, so a resumed run keeps them

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(row) for row in state_dict["rows"]]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        row = {"epoch": trainer.current_epoch + 1, "lr": lr, "seconds": round(time.perf_counter() - self._start, 2)}
        row.update({k: metrics.get(k) for k in HISTORY_COLUMNS if k not in row})
        # Several sources: val_score/<source>; not a logger's extras (LearningRateMonitor's lr-Adam/pg1)
        row.update({k: metrics[k] for k in sorted(metrics) if "/" in k and k.startswith("val_")})
        self.rows.append(row)
        if not trainer.is_global_zero:
            return
        buffer = io.StringIO()
        per_source = sorted({k for r in self.rows for k in r if "/" in k})
        writer = csv.DictWriter(buffer, fieldnames=[*HISTORY_COLUMNS, *per_source])
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, buffer.getvalue())


class EpochLines(L.Callback):
    """One line per finished epoch on stderr, for output that is not a terminal (CI, ``nohup``, a scheduler's log).

    Progress bars are redrawn in place with carriage returns, which a log file keeps as thousands of lines; this
    prints the epoch's row of ``history.csv`` instead. Put it after ``history`` in the callbacks, so that the
    row is there when it prints.
    """

    def __init__(self, history: HistoryCallback, stream: TextIO | None = None) -> None:
        self.history = history
        self.stream = stream

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self.history.rows:
            return
        row = self.history.rows[-1]
        values = [f"{k} {row[k]:.4g}" for k in HISTORY_COLUMNS if k not in ("epoch", "seconds") and row[k] is not None]
        line = f"epoch {row['epoch']}/{trainer.max_epochs}: {', '.join(values)} ({row['seconds']:.1f} s)"
        print(line, file=self.stream or sys.stderr, flush=True)
