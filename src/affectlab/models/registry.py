"""Backbone registry: one decorator to add a backbone, one factory to build it.

A backbone entry knows its torchvision weights enum, so pretrained weights, the file name torchvision caches
them under, and the normalisation they expect all come from torchvision's weights API, never from constants
copied by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn
from torchvision.models import WeightsEnum

from affectlab.errors import AffectlabError

__all__ = ["BackboneSpec", "register_backbone", "get_backbone_spec", "list_backbones"]


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one convolutional trunk.

    ``build(weights)`` returns a torchvision model; ``trunk(model)`` picks the module whose output is the last
    feature map (before any pooling or classifier), with ``feature_dim`` channels.
    """

    name: str
    build: Callable[..., nn.Module]
    weights: type[WeightsEnum]
    trunk: Callable[[nn.Module], nn.Module]
    feature_dim: int
    paper: str = ""


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_backbone_spec(name: str) -> BackboneSpec:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AffectlabError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}") from None


def list_backbones() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    # Imported lazily so that importing the registry alone has no side effects.
    from affectlab.models import backbones  # noqa: F401
