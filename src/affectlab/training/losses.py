"""The training objective: cross-entropy for expression, MSE and/or 1 - CCC for valence/arousal.

Owned by the LightningModule (``AffectLitModule.loss``), so the loss a run optimised is defined in one place
and the validation loss, the early stopping and the checkpoints all read the same numbers. ``selection_score``
is the one definition of ``val_score``, used in training and by the ablation benchmark.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from affectlab.config import TrainConfig

__all__ = ["AffectLoss", "ccc_loss", "selection_score"]


class AffectLoss(nn.Module):
    """Weighted sum of the task losses of whichever heads the model has."""

    def __init__(self, cfg: TrainConfig, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.class_weights: torch.Tensor
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.empty(0))

    def forward(self, out: dict[str, torch.Tensor], expression: torch.Tensor, va: torch.Tensor) -> torch.Tensor:
        """Computed in fp32: under mixed precision the heads return bf16/fp16, whose rounding would bias the CCC
        term's variances, and the class weights are fp32."""
        out = {k: v.float() for k, v in out.items()}
        total = out[next(iter(out))].new_zeros(())
        if "expression" in out:
            weight = self.class_weights if self.class_weights.numel() else None
            ce = F.cross_entropy(out["expression"], expression, weight=weight, label_smoothing=self.cfg.label_smoothing)
            total = total + self.cfg.expression_loss_weight * ce
        if "va" in out:
            total = total + self.cfg.va_loss_weight * self._va_loss(out["va"], va)
        return total

    def _va_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = pred.new_zeros(())
        if "mse" in self.cfg.va_loss:
            loss = loss + F.mse_loss(pred, target)
        if "ccc" in self.cfg.va_loss:
            loss = loss + ccc_loss(pred, target)
        return loss


def selection_score(
    accuracy: float | torch.Tensor | None, mean_ccc: float | torch.Tensor | None
) -> float | torch.Tensor:
    """``val_score``: accuracy plus mean valence/arousal CCC, whichever the task has; one number to select on
    when the losses (label smoothing, CCC terms) stop tracking what is reported."""
    terms = [t for t in (accuracy, mean_ccc) if t is not None]
    if not terms:
        raise ValueError("selection_score needs an accuracy or a CCC")
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def ccc_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Differentiable ``1 - CCC``, averaged over columns, for training valence/arousal heads.

    Optimising CCC directly aligns training with the headline evaluation metric (MSE alone tends to shrink
    predictions toward the mean, which CCC punishes). Uses the same population statistics as :func:`ccc`,
    so on a full set the loss equals ``1 - ccc``; ``eps`` in the denominator keeps gradients finite when a
    mini-batch is (nearly) constant.

    Args:
        pred: Predictions, shape (N, D) (normally D = 2: valence, arousal) or (N,).
        target: Labels, same shape as ``pred``.
        eps: Added to the denominator for numerical stability.

    Returns:
        A scalar tensor in [0, 2] (up to ``eps``): 0 for perfect agreement.

    Raises:
        ValueError: If the shapes differ or are not 1-D/2-D.
    """
    if pred.shape != target.shape or pred.ndim not in (1, 2):
        raise ValueError(f"pred and target must have equal (N,) or (N, D) shapes, got {pred.shape}, {target.shape}")
    if pred.ndim == 1:
        pred, target = pred.unsqueeze(1), target.unsqueeze(1)
    target = target.to(pred.dtype)
    mu_p = pred.mean(dim=0)
    mu_t = target.mean(dim=0)
    var_p = pred.var(dim=0, correction=0)
    var_t = target.var(dim=0, correction=0)
    cov = ((pred - mu_p) * (target - mu_t)).mean(dim=0)
    ccc_per_dim = 2.0 * cov / (var_p + var_t + (mu_p - mu_t) ** 2 + eps)
    return 1.0 - ccc_per_dim.mean()
