"""Built-in backbones: torchvision ImageNet CNNs used as feature trunks.

VGG16: Simonyan & Zisserman, https://arxiv.org/abs/1409.1556
MobileNetV2: Sandler et al., https://arxiv.org/abs/1801.04381
ResNet18/50: He et al., https://arxiv.org/abs/1512.03385
EfficientNet-B0: Tan & Le, https://arxiv.org/abs/1905.11946
"""

from __future__ import annotations

from torchvision import models as tvm

from affectlab.models.registry import BackboneSpec, register_backbone

__all__ = ["VGG16", "MOBILENET_V2", "RESNET18", "RESNET50", "EFFICIENTNET_B0"]

VGG16 = register_backbone(
    BackboneSpec("vgg16", tvm.vgg16, tvm.VGG16_Weights, lambda m: m.features, 512, "arXiv:1409.1556")
)
MOBILENET_V2 = register_backbone(
    BackboneSpec(
        "mobilenet_v2", tvm.mobilenet_v2, tvm.MobileNet_V2_Weights, lambda m: m.features, 1280, "arXiv:1801.04381"
    )
)


def _resnet_trunk(model):  # type: ignore[no-untyped-def]
    import torch.nn as nn

    return nn.Sequential(*list(model.children())[:-2])


RESNET18 = register_backbone(
    BackboneSpec("resnet18", tvm.resnet18, tvm.ResNet18_Weights, _resnet_trunk, 512, "arXiv:1512.03385")
)
RESNET50 = register_backbone(
    BackboneSpec("resnet50", tvm.resnet50, tvm.ResNet50_Weights, _resnet_trunk, 2048, "arXiv:1512.03385")
)
EFFICIENTNET_B0 = register_backbone(
    BackboneSpec(
        "efficientnet_b0", tvm.efficientnet_b0, tvm.EfficientNet_B0_Weights, lambda m: m.features, 1280,
        "arXiv:1905.11946",
    )
)
