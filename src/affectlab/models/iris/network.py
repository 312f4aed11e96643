"""MediaPipe's Iris landmark network as a plain PyTorch module.

The network (Ablavatski et al., "Real-time Pupil Tracking from Monocular Video for Digital Puppetry",
https://arxiv.org/abs/2006.11341) sees one eye: a 64 x 64 RGB crop around it, eyebrow included. Every block is a
bottleneck: a 1x1 convolution to half the channels (2x2 with stride 2 where the block halves the resolution), a
depthwise 3x3, a 1x1 back to the block's width, added to the input (max-pooled, and zero-padded in channels where
the width grows) and passed through a per-channel PReLU. A shared trunk (64 -> 8 px) feeds two branches of eight
blocks each (8 -> 2 px), which end in a 2x2 convolution: 71 eye-contour and eyebrow points, and 5 iris points
(centre, then four on the rim). Each point is (x, y, z) in input pixels.

As in ``facemesh.network``, the layers are written out, so the module trains, exports to ONNX and runs in
``channels_last``; ``tools/convert_iris.py`` fills it from Google's TFLite file. The stem's stride-2 convolution
pads only bottom and right, as TensorFlow's "same" padding does on an even input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["INPUT_SIZE", "N_CONTOUR", "N_IRIS", "IrisBlock", "IrisNet"]

#: Side of the square RGB eye crop in pixels; values in [0, 1].
INPUT_SIZE = 64
#: Eye-contour and eyebrow points per eye (MediaPipe's order: lower lid 0-8 corner to corner, upper lid 9-15, then
#: four rings of halo and brow points).
N_CONTOUR = 71
#: Iris points per eye: centre, then the rim's points.
N_IRIS = 5


class IrisBlock(nn.Module):
    """``PReLU(shortcut(x) + expand(depthwise(PReLU(reduce(x)))))``; stride 2 halves the resolution."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1) -> None:
        super().__init__()
        middle = channels_out // 2
        self.stride = stride
        self.extra_channels = channels_out - channels_in
        self.reduce = nn.Conv2d(channels_in, middle, stride, stride)  # 1x1, or 2x2 with stride 2
        self.reduce_act = nn.PReLU(middle)
        self.depthwise = nn.Conv2d(middle, middle, 3, 1, padding=1, groups=middle)
        self.expand = nn.Conv2d(middle, channels_out, 1)
        self.act = nn.PReLU(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = F.max_pool2d(x, 2) if self.stride == 2 else x
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return self.act(shortcut + self.expand(self.depthwise(self.reduce_act(self.reduce(x)))))


def _branch(outputs: int) -> nn.Sequential:
    """Eight blocks at 128 channels from 8 px to 2 px, then a 2x2 convolution to ``outputs`` values at 1 px."""
    plan = [(128, 128, 1), (128, 128, 1), (128, 128, 2), (128, 128, 1), (128, 128, 1), (128, 128, 2)]
    plan += [(128, 128, 1), (128, 128, 1)]
    return nn.Sequential(*(IrisBlock(*p) for p in plan), nn.Conv2d(128, outputs, 2), nn.Flatten(1))


class IrisNet(nn.Module):
    """64 x 64 RGB eye crop in [0, 1] (N x 3 x H x W) -> (contour N x 71 x 3, iris N x 5 x 3), in input pixels.

    The network was trained on the eye on the image's left (the person's right eye); MediaPipe, and
    ``runtime.eyes``, mirror the other eye's crop before the call and the points back after it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem_pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.stem = nn.Conv2d(3, 64, 3, 2)
        self.stem_act = nn.PReLU(64)
        plan = [(64, 64, 1)] * 4 + [(64, 128, 2)] + [(128, 128, 1)] * 4 + [(128, 128, 2)]
        self.trunk = nn.Sequential(*(IrisBlock(*p) for p in plan))
        self.contour_head = _branch(N_CONTOUR * 3)
        self.iris_head = _branch(N_IRIS * 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(self.stem_act(self.stem(self.stem_pad(x))))
        contour = self.contour_head(features).reshape(-1, N_CONTOUR, 3)
        return contour, self.iris_head(features).reshape(-1, N_IRIS, 3)
