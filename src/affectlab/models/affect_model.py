"""AffectModel: a CNN trunk, global average pooling, and an expression head and/or a valence/arousal head.

The forward pass returns named outputs (``expression`` logits, ``va`` values) rather than a bare tensor, so the
multitask model and the single-task models share every consumer. ``forward_features`` / ``forward_head`` are
split so that a frozen trunk's pooled features can be computed once and the head trained on them. An optional
``branch`` (``models.branch``) adds a second trunk's pooled features to the trunk's; an optional ``head_norm``
(BatchNorm1d) normalises the pooled features, as part of the head, so it trains on cached features too.
"""

from __future__ import annotations

import torch
from torch import nn

from affectlab.config import ModelConfig
from affectlab.errors import AffectlabError
from affectlab.labels import NUM_EMOTIONS
from affectlab.models.branch import FeatureBranch, build_branch
from affectlab.models.heads import FeatureNorm, MLPHead
from affectlab.models.weights import Backbone, resolve_backbone

__all__ = ["AffectModel", "create_model", "task_outputs"]


def task_outputs(task: str) -> tuple[bool, bool]:
    """(has expression head, has valence/arousal head) for a task name."""
    return task in ("classification", "multitask"), task in ("regression", "multitask")


class AffectModel(nn.Module):
    def __init__(
        self,
        trunk: nn.Module,
        feature_dim: int,
        task: str,
        hidden: int = 256,
        dropout: float = 0.5,
        branch: FeatureBranch | None = None,
        head_norm: bool = False,
    ) -> None:
        super().__init__()
        self.task = task
        self.trunk = trunk
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.branch = branch  # None adds no state dict keys: older checkpoints keep theirs
        if branch is not None:
            feature_dim += branch.feature_dim
        # None adds no state dict keys either: checkpoints without it load as before
        self.head_norm = FeatureNorm(feature_dim) if head_norm else None
        has_expression, has_va = task_outputs(task)
        self.expression_head = MLPHead(feature_dim, NUM_EMOTIONS, hidden, dropout) if has_expression else None
        self.va_head = MLPHead(feature_dim, 2, hidden, dropout) if has_va else None
        self._trunk_frozen = False
        self._branch_frozen = False

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.trunk(images))
        if self.branch is not None:
            features = torch.cat([features, self.branch(images)], dim=1)
        return features

    def forward_head(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if self.head_norm is not None:
            features = self.head_norm(features)
        if self.expression_head is not None:
            out["expression"] = self.expression_head(features)
        if self.va_head is not None:
            out["va"] = self.va_head(features)
        return out

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(images))

    def freeze_trunk(self, frozen: bool = True) -> None:
        """Freeze (or release) the trunk; a frozen trunk also keeps its BatchNorm statistics fixed."""
        self._trunk_frozen = frozen
        for param in self.trunk.parameters():
            param.requires_grad_(not frozen)
        self.train(self.training)

    def freeze_branch(self, frozen: bool = True) -> None:
        """Freeze (or release) the branch, as ``freeze_trunk`` does the trunk."""
        self._branch_frozen = frozen
        if self.branch is not None:
            for param in self.branch.parameters():
                param.requires_grad_(not frozen)
        self.train(self.training)

    @property
    def trunk_frozen(self) -> bool:
        return self._trunk_frozen

    @property
    def branch_frozen(self) -> bool:
        return self._branch_frozen

    def train(self, mode: bool = True) -> AffectModel:
        super().train(mode)
        if self._trunk_frozen:
            self.trunk.eval()
        if self._branch_frozen and self.branch is not None:
            self.branch.eval()
        return self

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith(("trunk.", "branch."))]


def create_model(config: ModelConfig, backbone: Backbone | None = None) -> AffectModel:
    """Build an AffectModel from its config, loading the trunk's weights as the config (or the resolved
    ``backbone`` of that config) says."""
    backbone = backbone or resolve_backbone(config.backbone, config.weights)
    if config.input_size < backbone.spec.min_size:
        raise AffectlabError(
            f"backbone {backbone.name} needs model.input_size >= {backbone.spec.min_size} "
            f"(got {config.input_size}; it was trained at {backbone.spec.native_size or 'any size'})"
        )
    branch = None
    if config.branch is not None:
        branch = build_branch(config.branch, config.weights, config.input_size, backbone.mean, backbone.std)
    model = AffectModel(
        backbone.build_trunk(),
        backbone.spec.feature_dim,
        config.task,
        config.hidden,
        config.dropout,
        branch,
        config.head_norm,
    )
    model.freeze_trunk(config.freeze)
    model.freeze_branch(config.branch_freeze)
    return model
