"""Backbones: torchvision ImageNet CNNs used as feature trunks, in a registry that one decorator extends.

A backbone entry knows its torchvision weights enum, so pretrained weights, the file name torchvision caches
them under, and the normalisation they expect all come from torchvision's weights API, never from constants
copied by hand (see ``models/weights.py``, which resolves a name and a weights setting into one ``Backbone``).
``facemesh`` is the one trunk not from torchvision: MediaPipe's FaceMesh landmark network, trained on faces, whose
weights ship inside affectlab (``models/facemesh``); its weights setting is ``facemesh`` (or none or PATH).
``face_resnet29`` is dlib's face-recognition ResNet (``models/face_resnet``), trained to tell ~7,500 people apart;
its weights setting is ``face`` (or none or PATH), and it needs an input side of at least 103 px (native 150).

VGG16: Simonyan & Zisserman, https://arxiv.org/abs/1409.1556
MobileNetV2: Sandler et al., https://arxiv.org/abs/1801.04381
ResNet18/50: He et al., https://arxiv.org/abs/1512.03385
EfficientNet-B0: Tan & Le, https://arxiv.org/abs/1905.11946
FaceMesh: Kartynnik et al., https://arxiv.org/abs/1907.06724
dlib face ResNet: D. King, http://blog.dlib.net/2017/02/high-quality-face-recognition-with-deep.html
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torchvision import models as tvm
from torchvision.models import WeightsEnum

from affectlab.errors import AffectlabError

__all__ = [
    "EFFICIENTNET_B0",
    "FACEMESH",
    "FACE_RESNET29",
    "MOBILENET_V2",
    "RESNET18",
    "RESNET50",
    "VGG16",
    "BackboneSpec",
    "get_backbone_spec",
    "list_backbones",
    "register_backbone",
]


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one convolutional trunk.

    ``build(weights)`` returns a torchvision model; ``trunk(model)`` picks the module whose output is the last
    feature map (before any pooling or classifier), with ``feature_dim`` channels.

    A trunk without torchvision weights has ``weights`` None and instead ``packaged``: the weights setting that
    selects its packaged weights, loaded by ``load_packaged()``, and the ``mean``/``std`` its inputs expect.
    ``native_size``: the input side the network was trained at, which it gets as a branch (None: any);
    ``min_size``: the smallest input side it accepts.
    """

    name: str
    build: Callable[..., nn.Module]
    weights: type[WeightsEnum] | None
    trunk: Callable[[nn.Module], nn.Module]
    feature_dim: int
    paper: str = ""
    packaged: str | None = None
    load_packaged: Callable[[], nn.Module] | None = None
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    native_size: int | None = None
    min_size: int = 32


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AffectlabError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}") from None


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def _features(model: nn.Module) -> nn.Module:
    return model.features  # type: ignore[return-value]


def _resnet_trunk(model: nn.Module) -> nn.Module:
    return nn.Sequential(*list(model.children())[:-2])


VGG16 = register_backbone(BackboneSpec("vgg16", tvm.vgg16, tvm.VGG16_Weights, _features, 512, "arXiv:1409.1556"))
MOBILENET_V2 = register_backbone(
    BackboneSpec("mobilenet_v2", tvm.mobilenet_v2, tvm.MobileNet_V2_Weights, _features, 1280, "arXiv:1801.04381")
)
RESNET18 = register_backbone(
    BackboneSpec("resnet18", tvm.resnet18, tvm.ResNet18_Weights, _resnet_trunk, 512, "arXiv:1512.03385")
)
RESNET50 = register_backbone(
    BackboneSpec("resnet50", tvm.resnet50, tvm.ResNet50_Weights, _resnet_trunk, 2048, "arXiv:1512.03385")
)
EFFICIENTNET_B0 = register_backbone(
    BackboneSpec(
        "efficientnet_b0", tvm.efficientnet_b0, tvm.EfficientNet_B0_Weights, _features, 1280, "arXiv:1905.11946"
    )
)


def _facemesh(weights: None = None) -> nn.Module:
    from affectlab.models.facemesh import FaceMeshNet

    return FaceMeshNet()


def _facemesh_packaged() -> nn.Module:
    from affectlab.models.facemesh import load_facemesh

    return load_facemesh()


def _feature_trunk(model: nn.Module) -> nn.Module:
    """``feature_trunk()`` of a ported network (FaceMesh, the dlib face ResNet)."""
    return model.feature_trunk()  # type: ignore[operator]


#: Inputs in [0, 1], as the network was trained (mean 0, std 1).
FACEMESH = register_backbone(
    BackboneSpec(
        "facemesh",
        _facemesh,
        None,
        _feature_trunk,
        128,
        "arXiv:1907.06724",
        packaged="facemesh",
        load_packaged=_facemesh_packaged,
        native_size=192,
    )
)


def _face_resnet(weights: None = None) -> nn.Module:
    from affectlab.models.face_resnet import FaceResNet29

    return FaceResNet29()


def _face_resnet_packaged() -> nn.Module:
    from affectlab.models.face_resnet import load_face_resnet

    return load_face_resnet()


#: dlib's input convention, ``(pixel - mean) / 256`` on 0-255 pixels, for affectlab's [0, 1] inputs.
_DLIB_MEAN = (122.782 / 255, 117.001 / 255, 104.298 / 255)
FACE_RESNET29 = register_backbone(
    BackboneSpec(
        "face_resnet29",
        _face_resnet,
        None,
        _feature_trunk,
        256,
        "dlib face recognition ResNet (D. King 2017, dlib-models; no arXiv)",
        packaged="face",
        load_packaged=_face_resnet_packaged,
        mean=_DLIB_MEAN,
        std=(256 / 255,) * 3,
        native_size=150,
        min_size=103,
    )
)
