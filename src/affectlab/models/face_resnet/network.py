"""dlib's face-recognition ResNet as a plain PyTorch module.

Davis King's network (dlib 19.3, 2017; http://blog.dlib.net/2017/02/high-quality-face-recognition-with-deep.html,
weights in https://github.com/davisking/dlib-models) is a ResNet-34 layout with half the filters and a few
blocks fewer: 29 convolutions, 150 x 150 RGB in, a 128-D face descriptor out. It is written out here layer by
layer, as dlib's C++ type ``anet_type`` (``examples/dnn_face_recognition_ex.cpp``) declares it, so that it trains,
runs in ``channels_last`` and exports to ONNX like any other module; ``tools/convert_dlib_face.py`` fills it from
dlib's file and ``load_face_resnet`` reads the packaged weights after checking their hash.

dlib's conventions that differ from torchvision's ResNet, each kept exactly:

- A convolution with stride 2 has no padding (dlib pads ``size // 2`` only when the stride is 1), so 150 px gives
  72 px after the 7x7 stem and 35 px after the 3x3 max-pool.
- Batch normalisation was folded by dlib into a per-channel affine layer (``gamma * x + beta``), ``Affine`` here.
- A down-sampling block's shortcut is a 2x2 average pool (no 1x1 convolution); where shortcut and branch differ
  in channels or size (4 x 4 against 3 x 3, 2 x 2 against 1 x 1 at 150 px), dlib's ``add_prev`` adds them into
  the larger shape with the smaller one zero-padded from the top-left corner; ``_padded_add`` does the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DESCRIPTOR_DIM", "FEATURE_DIM", "INPUT_SIZE", "MEAN_RGB", "MIN_INPUT_SIZE", "FaceResNet29", "ResBlock"]

#: Side of the square RGB face chip the network was trained on (dlib's ``get_face_chip``: 5 landmarks, 25% padding).
INPUT_SIZE = 150
#: The smallest input side the network accepts: below it a stride-2 convolution meets a map smaller than 3 x 3.
MIN_INPUT_SIZE = 103
#: dlib's ``input_rgb_image_sized`` subtracts these per-channel means from 0-255 pixels and divides by 256.
MEAN_RGB = (122.782, 117.001, 104.298)
#: Channels of the last feature map (``feature_trunk``) and length of the descriptor (``forward``).
FEATURE_DIM = 256
DESCRIPTOR_DIM = 128

#: (output channels, blocks, first block halves the size) per stage, input side first, as in dlib's anet_type.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class Affine(nn.Module):
    """Per-channel ``weight * x + bias``: dlib's ``affine`` layer (a batch norm with its statistics folded in)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` in the larger of their shapes, each zero-padded at the end of channels, rows and columns."""
    channels, rows, cols = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:]))

    def grow(t: torch.Tensor) -> torch.Tensor:
        pad = (0, cols - t.shape[3], 0, rows - t.shape[2], 0, channels - t.shape[1])
        return F.pad(t, pad) if any(pad) else t

    return grow(a) + grow(b)


class ResBlock(nn.Module):
    """``relu(shortcut(x) + affine(conv(relu(affine(conv(x))))))``, 3x3 convolutions; ``stride`` 2 halves the size
    (unpadded convolution, 2x2 average-pool shortcut) and may widen the channels (zero-padded shortcut)."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, padding=1 if stride == 1 else 0)
        self.affine1 = Affine(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, padding=1)
        self.affine2 = Affine(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2) if self.stride == 2 else x
        return F.relu(_padded_add(shortcut, branch))


class FaceResNet29(nn.Module):
    """Face chip (N x 3 x 150 x 150, normalised as dlib does: ``(pixel - MEAN_RGB) / 256``) -> 128-D descriptor.

    Faces of one person lie within about 0.6 (Euclidean) of each other. ``feature_trunk()`` is the network up to
    its last feature map (N x 256 x 2 x 2 at 150 px), for use as a backbone; it takes any side >= 103 px.
    """

    feature_dim = FEATURE_DIM

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 7, 2), Affine(32), nn.ReLU(), nn.MaxPool2d(3, 2))
        blocks: list[ResBlock] = []
        channels = 32
        for width, count, down in STAGES:
            for i in range(count):
                blocks.append(ResBlock(channels, width, 2 if down and i == 0 else 1))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(FEATURE_DIM, DESCRIPTOR_DIM, bias=False)

    def feature_trunk(self) -> nn.Sequential:
        """The stem and the residual blocks as one module (sharing their parameters), without pooling and the
        descriptor layer: the backbone ``face_resnet29`` (see ``models.backbones``)."""
        return nn.Sequential(self.stem, self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))
