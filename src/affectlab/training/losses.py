"""The training objective: cross-entropy for expression (hard labels or crowd votes), MSE and/or 1 - CCC for
valence/arousal.

Owned by the LightningModule (``AffectLitModule.loss``), so the loss a run optimised is defined in one place
and the validation loss, the early stopping and the checkpoints all read the same numbers. ``selection_score``
is the one definition of ``val_score``, used in training and by the ablation benchmark.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from affectlab.config import TrainConfig

__all__ = ["AffectLoss", "ccc_loss", "class_cross_entropy", "masked_cross_entropy", "selection_score"]


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
    * **Soft targets are targets** (FER+ crowd votes): ``target`` is each face's class distribution, one-hot for a
      hard label, so one cross-entropy serves both (``class_cross_entropy``).

    One source labelling every class, with a hard label on every face, passes class indices to PyTorch's
    ``cross_entropy`` exactly as before, so a single dataset trains bit for bit as it did; every other batch passes
    class probabilities to the same function, which equals it on one-hot targets (tested).
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
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Computed in fp32: under mixed precision the heads return bf16/fp16, whose rounding would bias the CCC
        term's variances, and the class weights are fp32. ``source`` is each sample's source index (default 0);
        ``target`` each face's class distribution (``data.votes.class_targets``; default: one-hot ``expression``)."""
        out = {k: v.float() for k, v in out.items()}
        total = out[next(iter(out))].new_zeros(())
        if source is None:
            source = torch.zeros_like(expression)
        if "expression" in out:
            total = total + self.cfg.expression_loss_weight * self._expression_loss(
                out["expression"], expression, source, target
            )
        if "va" in out:
            total = total + self.cfg.va_loss_weight * self._va_loss(out["va"], va)
        return total

    def _expression_loss(
        self, logits: torch.Tensor, expression: torch.Tensor, source: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        weights = self.class_weights if self.class_weights.numel() else None
        full = not self.class_mask.numel() or bool(self.class_mask[source].all())
        hard = target is None or bool(_is_one_hot_of(target, expression).all())
        if full and hard and bool((expression >= 0).all()) and (weights is None or len(weights) == 1):
            weight = None if weights is None else weights[0]
            return F.cross_entropy(logits, expression, weight=weight, label_smoothing=self.cfg.label_smoothing)
        return class_cross_entropy(
            logits,
            expression if target is None else target,
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


def class_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """PyTorch's ``cross_entropy`` on class probabilities, with a per-sample class ``mask`` and class ``weights``.

    ``target`` is (N, C) class probabilities (a vote distribution, or the one-hot of a hard label) or (N,) class
    codes, turned one-hot; a row without a class (all zeros, or code -1) is left out. The mean is PyTorch's weighted
    one, each face's loss divided by the sum over faces of its target's weight (``sum_c w_c y_c``: ``w[label]`` for
    a hard label), so on one-hot targets this equals ``cross_entropy`` with class indices, class weights and label
    smoothing (tested). ``weights`` is one row per sample (N, C) or one for all (C,).

    Logits outside a sample's ``mask`` leave its softmax: they are set to the lowest finite value (not -inf, whose
    product with a zero target would be NaN), so their probability and gradient are exactly zero, and label
    smoothing spreads over the sample's classes only.
    """
    if target.ndim == 1:
        labelled_codes = target >= 0
        target = F.one_hot(target.clamp(min=0), logits.shape[1]).to(logits.dtype) * labelled_codes[:, None]
    target = target.to(logits.dtype)
    labelled = target.sum(dim=1) > 0
    if mask is None:
        mask = torch.ones_like(logits, dtype=torch.bool)
    if weights is None:
        weights = torch.ones_like(logits)
    elif weights.ndim == 1:
        weights = weights.expand_as(logits)
    logits, target, mask, weights = logits[labelled], target[labelled], mask[labelled], weights[labelled]
    if not len(target):
        return logits.sum() * 0.0
    classes = mask.sum(dim=1, keepdim=True).to(logits.dtype)
    smoothed = (1.0 - label_smoothing) * target + label_smoothing * mask.to(logits.dtype) / classes
    outside = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    per_sample = F.cross_entropy(outside, weights.to(logits.dtype) * smoothed, reduction="none")
    return per_sample.sum() / (weights * target).sum()


#: The name this loss had before soft targets: the same function.
masked_cross_entropy = class_cross_entropy


def _is_one_hot_of(target: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
    """Per row: ``target`` is the one-hot of ``expression`` (or zeros for -1), i.e. a hard label."""
    labelled = expression >= 0
    one_hot = F.one_hot(expression.clamp(min=0), target.shape[1]).to(target.dtype) * labelled[:, None]
    return (target == one_hot).all(dim=1)


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
