"""The built-in backbones' names, known without importing torch or torchvision.

The command line checks ``--backbone`` and ``--backbones`` against these before it imports anything heavy, so a
mistyped name is answered at once; ``models/backbones.py`` registers exactly these (a test holds the two together).
"""

from __future__ import annotations

from collections.abc import Iterable

from affectlab.errors import AffectlabError

__all__ = ["BACKBONE_NAMES", "check_backbone_names"]

BACKBONE_NAMES: tuple[str, ...] = (
    "efficientnet_b0",
    "face_resnet29",
    "facemesh",
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "vgg16",
)


def check_backbone_names(names: Iterable[str]) -> None:
    """Refuse the first name that is not a built-in backbone, listing the ones there are."""
    for name in names:
        if name not in BACKBONE_NAMES:
            raise AffectlabError(f"unknown backbone {name!r}; available: {', '.join(BACKBONE_NAMES)}")
