"""Prediction heads, exactly the reference study's: Dense 256 ReLU -> Dropout 0.5 -> output."""

from __future__ import annotations

from torch import nn

__all__ = ["MLPHead"]


class MLPHead(nn.Sequential):
    """Pooled features -> hidden ReLU layer -> dropout -> ``out_dim`` logits or values (no activation)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
        )
