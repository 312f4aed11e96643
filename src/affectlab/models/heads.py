"""Prediction heads, exactly the reference study's: Dense 256 ReLU -> Dropout 0.5 -> output."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeatureNorm", "MLPHead"]


class FeatureNorm(nn.BatchNorm1d):
    """BatchNorm1d on pooled features (``model.head_norm``) that also takes a training batch of one sample (an
    epoch's last batch can be): with nothing to estimate statistics from, it normalises with the running ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class MLPHead(nn.Sequential):
    """Pooled features -> hidden ReLU layer -> dropout -> ``out_dim`` logits or values (no activation)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
        )
