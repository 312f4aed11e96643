"""A second trunk on the same face, fused with the backbone: ``model.branch`` (issue 27's FaceMesh branch).

The model's input is normalised for its backbone (ImageNet's mean and std for MobileNetV2) at its input size.
A branch trained elsewhere expects its own convention: FaceMesh takes RGB in [0, 1] at 192 px. So the branch
undoes the backbone's normalisation, applies its own, and resizes to its native side inside the network: the
model keeps one input, so the data pipeline, flip TTA, the ONNX export and every runtime stay as they are.
Its pooled features are concatenated to the backbone's before the heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from affectlab.models.backbones import get_backbone_spec
from affectlab.models.weights import resolve_backbone

__all__ = ["FeatureBranch", "build_branch"]


class FeatureBranch(nn.Module):
    """A trunk with its own input convention and global average pooling: images in the backbone's, features out.

    Args:
        trunk: the branch network, up to its last feature map.
        feature_dim: channels of that feature map.
        size: the side it takes its input at.
        scale, shift: per channel, ``x * scale + shift`` turns the backbone's normalised input into the branch's.
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self, trunk: nn.Module, feature_dim: int, size: int, scale: tuple[float, ...], shift: tuple[float, ...]
    ) -> None:
        super().__init__()
        self.trunk, self.feature_dim, self.size = trunk, feature_dim, size
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).view(1, -1, 1, 1))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * self.scale + self.shift
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.pool(self.trunk(x))


def build_branch(
    name: str, weights: str, input_size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> FeatureBranch:
    """The branch ``name`` for a backbone whose inputs are normalised by ``mean``/``std`` at ``input_size``.

    ``weights`` is the model's setting: ``none`` builds the branch at random (a checkpoint's weights then fill
    it); anything else loads the branch's own pretrained weights (the packaged ones, or ImageNet's).
    """
    spec = get_backbone_spec(name)
    backbone = resolve_backbone(name, "none" if weights == "none" else spec.packaged or "imagenet")
    own_mean, own_std = backbone.mean, backbone.std
    scale = tuple(s / o for s, o in zip(std, own_std))
    shift = tuple((m - om) / o for m, om, o in zip(mean, own_mean, own_std))
    return FeatureBranch(backbone.build_trunk(), spec.feature_dim, spec.native_size or input_size, scale, shift)
