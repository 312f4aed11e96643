"""MediaPipe's FaceMesh landmark network as a plain PyTorch module.

The network (Kartynnik et al., "Real-time Facial Surface Geometry from Monocular Video on Mobile GPUs",
https://arxiv.org/abs/1907.06724) is a small residual CNN: every block adds a depthwise 3x3 then pointwise 1x1
convolution to its input and applies a per-channel PReLU; a block that halves the resolution max-pools its input
and zero-pads the missing channels. A shared trunk (192 -> 6 px) feeds two heads: 468 3-D landmarks and one face
presence logit. The layers are written out here rather than converted as a graph, so the module trains, exports to
ONNX and runs in ``channels_last`` like any other; ``tools/convert_facemesh.py`` fills it from Google's TFLite
file, and ``load_facemesh`` reads the packaged weights after checking their hash.

TensorFlow's "same" padding for a stride-2 convolution on an even input pads only the bottom and right, which
``nn.Conv2d(padding=...)`` cannot express; such layers pad explicitly before an unpadded convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["INPUT_SIZE", "N_LANDMARKS", "FaceMeshNet", "MeshBlock"]

#: Side of the square RGB input in pixels; values in [0, 1].
INPUT_SIZE = 192
#: Landmarks per face, each (x, y, z) in input pixels (z: depth, same scale as x, smaller is nearer the camera).
N_LANDMARKS = 468


class MeshBlock(nn.Module):
    """``PReLU(shortcut(x) + pointwise(depthwise(x)))``; stride 2 halves the resolution."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = channels_out - channels_in
        self.depthwise = nn.Conv2d(
            channels_in, channels_in, 3, stride, padding=1 if stride == 1 else 0, groups=channels_in
        )
        self.pointwise = nn.Conv2d(channels_in, channels_out, 1)
        self.act = nn.PReLU(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.stride == 2:
            shortcut = F.max_pool2d(x, 2)
            x = F.pad(x, (0, 1, 0, 1))
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return self.act(shortcut + self.pointwise(self.depthwise(x)))


class _Head(nn.Module):
    """Blocks at 3 x 3 px, a 1x1 reduction to 32 channels, one more block, and a 3x3 convolution to 1 x 1."""

    def __init__(self, blocks: list[MeshBlock], outputs: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.reduce = nn.Conv2d(128, 32, 1)
        self.reduce_act = nn.PReLU(32)
        self.refine = MeshBlock(32, 32)
        self.out = nn.Conv2d(32, outputs, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.refine(self.reduce_act(self.reduce(self.blocks(x))))
        return self.out(x).flatten(1)


class FaceMeshNet(nn.Module):
    """192 x 192 RGB in [0, 1] (N x 3 x H x W) -> (landmarks N x 468 x 3 in input pixels, face logit N).

    ``torch.sigmoid`` of the logit is the face presence score. ``features`` is the trunk alone (N x 128 x H/32 x
    W/32: 6 x 6 at 192 px), for use as a backbone; any input side works there, the heads need 192 px.
    """

    feature_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.stem_pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.stem = nn.Conv2d(3, 16, 3, 2)
        self.stem_act = nn.PReLU(16)
        plan = [(16, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1)]
        plan += [(64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1), (128, 128, 2), (128, 128, 1)]
        plan += [(128, 128, 1)]
        self.trunk = nn.Sequential(*(MeshBlock(*p) for p in plan))
        self.landmark_head = _Head([MeshBlock(128, 128, 2), MeshBlock(128, 128), MeshBlock(128, 128)], N_LANDMARKS * 3)
        self.score_head = _Head([MeshBlock(128, 128, 2)], 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.stem_act(self.stem(self.stem_pad(x))))

    def feature_trunk(self) -> nn.Sequential:
        """The layers of ``features`` as one module (sharing their parameters), without the two heads: the
        backbone ``facemesh`` (see ``models.backbones``)."""
        return nn.Sequential(self.stem_pad, self.stem, self.stem_act, self.trunk)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        landmarks = self.landmark_head(features).reshape(-1, N_LANDMARKS, 3)
        return landmarks, self.score_head(features)[:, 0]
