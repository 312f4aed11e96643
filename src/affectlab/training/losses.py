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

__all__ = ["AffectLoss", "ccc_loss", "masked_cross_entropy", "selection_score"]


class AffectLoss(nn.Module):
    """Weighted sum of the task losses of whichever heads the model has.

    Several sources (``data.sources``) may label different things; what a sample's source does not label is
    missing, never a value:

    * **Classes: the logits are masked, not the loss.** ``class_mask[source]`` says which classes a source labels;
      the other logits of its samples are removed from their softmax (set to -inf before ``log_softmax``), and label
      smoothing spreads only over the source's classes. Masking the loss cannot do this: a cross-entropy term on
      the true class still normalises over every logit, so dropping terms would keep pushing the absent class
      (Contempt for FER-2013) down on every FER face, teaching that it never happens. With masked logits the
      absent class's logit gets exactly zero gradient from that source, towards or against; it is learned from
      the sources that label it. The model still outputs all classes.
    * **Valence/arousal: masked.** Rows without V/A (NaN) are left out of the MSE and CCC terms, which average over
      the rows that have it; a batch without any adds nothing. Nothing is imputed.
    * **Class weights per source:** ``class_weights`` is one row per source (sklearn's balanced weights within it).

    One source labelling every class, with every label present, takes PyTorch's ``cross_entropy`` unchanged, so a
    single dataset trains exactly as before; the masked path equals it when nothing is masked (tested).
    """

    def __init__(
        self, cfg: TrainConfig, class_weights: torch.Tensor | None = None, class_mask: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.class_weights: torch.Tensor
        self.class_mask: torch.Tensor
        weights = class_weights if class_weights is not None else torch.empty(0)
        self.register_buffer("class_weights", weights.reshape(-1, weights.shape[-1]) if weights.numel() else weights)
        self.register_buffer("class_mask", class_mask if class_mask is not None else torch.empty(0, dtype=torch.bool))

    def forward(
        self,
        out: dict[str, torch.Tensor],
        expression: torch.Tensor,
        va: torch.Tensor,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Computed in fp32: under mixed precision the heads return bf16/fp16, whose rounding would bias the CCC
        term's variances, and the class weights are fp32. ``source`` is each sample's source index (default 0)."""
        out = {k: v.float() for k, v in out.items()}
        total = out[next(iter(out))].new_zeros(())
        if source is None:
            source = torch.zeros_like(expression)
        if "expression" in out:
            total = total + self.cfg.expression_loss_weight * self._expression_loss(
                out["expression"], expression, source
            )
        if "va" in out:
            total = total + self.cfg.va_loss_weight * self._va_loss(out["va"], va)
        return total

    def _expression_loss(self, logits: torch.Tensor, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        weights = self.class_weights if self.class_weights.numel() else None
        full = not self.class_mask.numel() or bool(self.class_mask[source].all())
        if full and bool((target >= 0).all()) and (weights is None or len(weights) == 1):
            weight = None if weights is None else weights[0]
            return F.cross_entropy(logits, target, weight=weight, label_smoothing=self.cfg.label_smoothing)
        return masked_cross_entropy(
            logits,
            target,
            self.class_mask[source] if self.class_mask.numel() else None,
            None if weights is None else weights[source.clamp(max=len(weights) - 1)],
            self.cfg.label_smoothing,
        )

    def _va_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labelled = ~torch.isnan(target).any(dim=1)
        if not bool(labelled.all()):  # rows without V/A (a source that has none) are left out, not imputed
            pred, target = pred[labelled], target[labelled]
            if not len(target):
                return pred.sum() * 0.0  # no V/A in this batch: nothing to learn, and no gradient
        loss = pred.new_zeros(())
        if "mse" in self.cfg.va_loss:
            loss = loss + F.mse_loss(pred, target)
        if "ccc" in self.cfg.va_loss:
            loss = loss + ccc_loss(pred, target)
        return loss


def masked_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    weights: torch.Tensor | None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy over each sample's own classes: PyTorch's ``cross_entropy`` (mean reduction, class weights,
    label smoothing) generalised to a per-sample class ``mask`` and per-sample class ``weights`` (N, C).

    Logits outside a sample's mask are removed from its softmax, so they get no gradient from it; smoothing spreads
    over the sample's classes only. Samples without a class (target -1) are left out. Equals ``cross_entropy``
    when every class is in every mask and the weights are one row repeated.
    """
    labelled = target >= 0
    if mask is None:
        mask = torch.ones_like(logits, dtype=torch.bool)
    if weights is None:
        weights = torch.ones_like(logits)
    logits, target, mask, weights = logits[labelled], target[labelled], mask[labelled], weights[labelled]
    if not len(target):
        return logits.sum() * 0.0
    log_p = torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=1).masked_fill(~mask, 0.0)
    rows = torch.arange(len(target), device=target.device)
    w_target = weights[rows, target]
    normaliser = w_target.sum()
    nll = -(w_target * log_p[rows, target]).sum() / normaliser
    if not label_smoothing:
        return nll
    smooth = -((log_p * weights * mask).sum(1) / mask.sum(1)).sum() / normaliser
    return (1.0 - label_smoothing) * nll + label_smoothing * smooth


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
