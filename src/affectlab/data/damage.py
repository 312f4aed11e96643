"""Camera damage: what webcams and phone photos do to a face, as deterministic operations of a stated severity.

The same functions serve twice. Training draws their parameters at random (the ``augment.*`` options, through
``affectlab.data.augment``), and the robustness evaluation applies each at three fixed severities (``DAMAGES``)
to the test split, so a model is scored on exactly the damage it can be trained for. torchvision does the work
where it has the operation (resize, JPEG, Gaussian blur and noise, saturation, brightness); only the occluders,
which no library draws, are drawn here.

Every function takes uint8 or float (0..1) images, CHW or NCHW, and returns the same kind. Geometry is that of
a face crop as AffectNet's (and ``prepare``'s) are: eyes about 40% and the mouth about 75% of the way down.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from affectlab.data.samples import FaceArray

__all__ = [
    "DAMAGES",
    "Damage",
    "blur",
    "blur_kernel",
    "damage_names",
    "damaged",
    "downscale",
    "exposure",
    "get_damage",
    "greyscale",
    "jpeg",
    "noise",
    "occlude",
    "occluder_mask",
]

Region = Literal["eyes", "mouth"]
#: Where an occluder sits by default: (x, y) of its centre as a share of the crop's width and height.
CENTRES: dict[str, tuple[float, float]] = {"eyes": (0.5, 0.40), "mouth": (0.5, 0.75)}
EYES_BAR_WIDTH = 0.76  # the sunglasses bar spans both eyes: this share of the width; its height gives the area
MOUTH_ASPECT = 1.3  # the hand-like blob is an ellipse this much wider than tall
SUNGLASSES = (20, 20, 24)
#: Skin tones of the hand-like blob (light to dark); the evaluation uses the second.
SKIN_TONES = ((232, 190, 160), (198, 142, 112), (141, 85, 60), (90, 56, 40))


def downscale(images: torch.Tensor, px: int) -> torch.Tensor:
    """Down to ``px`` pixels on the long side (antialiased), then back up to the original size (bilinear):
    a face that was ``px`` pixels tall in the photo."""
    height, width = images.shape[-2:]
    factor = px / max(height, width)
    small = F.resize(images, [max(1, round(height * factor)), max(1, round(width * factor))], antialias=True)
    return F.resize(small, [height, width], antialias=True)


def greyscale(images: torch.Tensor, saturation: float) -> torch.Tensor:
    """Colour reduced to ``saturation`` of the original (0: grey, as a greyscale webcam or dataset)."""
    return F.adjust_saturation(images, saturation)


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """A JPEG round trip at ``quality`` (1..100), as a web photo or a chat app leaves it."""
    if images.is_floating_point():
        return F.jpeg((images * 255).round().to(torch.uint8), int(quality)).float() / 255
    return F.jpeg(images, int(quality))


def blur_kernel(sigma: float) -> int:
    """The Gaussian kernel side that keeps +-3 sigma."""
    return 2 * math.ceil(3 * sigma) + 1


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``sigma`` pixels at the model's input size (focus, motion, a cheap lens)."""
    k = blur_kernel(sigma)
    return F.gaussian_blur(images, [k, k], [float(sigma), float(sigma)])


def noise(images: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """Gaussian sensor noise of ``std`` (a share of the full range), drawn from ``seed`` without touching the
    global random state."""
    floats = images if images.is_floating_point() else images.float() / 255
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = F.gaussian_noise(floats, sigma=float(std), clip=True)
    return out if images.is_floating_point() else (out * 255).round().to(torch.uint8)


def exposure(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Every pixel value times ``factor``, clipped: under- (< 1) or over-exposure (> 1). uint8 values are
    rounded (torchvision's uint8 kernel truncates, a bias of half a level that matters in the dark)."""
    if images.is_floating_point():
        return F.adjust_brightness(images, float(factor))
    return (F.adjust_brightness(images.float() / 255, float(factor)) * 255).round().to(torch.uint8)


def occluder_mask(
    height: int, width: int, region: Region, area: float, centre: tuple[float, float] | None = None
) -> torch.Tensor:
    """The pixels an occluder of ``area`` (a share of the image) covers: a sunglasses bar over the eyes, or an
    elliptic hand-like blob over the mouth, centred at ``centre`` (shares of width and height)."""
    cx, cy = centre or CENTRES[region]
    ys = (torch.arange(height, dtype=torch.float32) + 0.5).view(-1, 1)
    xs = (torch.arange(width, dtype=torch.float32) + 0.5).view(1, -1)
    if region == "eyes":
        half_w = EYES_BAR_WIDTH * width / 2
        half_h = area * height / EYES_BAR_WIDTH / 2
        return ((xs - cx * width).abs() < half_w) & ((ys - cy * height).abs() < half_h)
    ry = math.sqrt(area * height * width / (MOUTH_ASPECT * math.pi))
    rx = MOUTH_ASPECT * ry
    return ((xs - cx * width) / rx) ** 2 + ((ys - cy * height) / ry) ** 2 < 1


def occlude(
    images: torch.Tensor,
    region: Region,
    area: float,
    centre: tuple[float, float] | None = None,
    colour: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """``images`` with an occluder painted over ``region`` (see ``occluder_mask``), in ``colour`` (0..255 RGB;
    default: dark glasses over the eyes, a mid skin tone over the mouth)."""
    height, width = images.shape[-2:]
    mask = occluder_mask(height, width, region, area, centre)
    rgb = colour or (SUNGLASSES if region == "eyes" else SKIN_TONES[1])
    fill = torch.tensor(rgb, dtype=torch.float32)
    fill = fill / 255 if images.is_floating_point() else fill
    out = images.clone()
    mask = mask.to(out.device)
    channels = out.shape[-3]
    for c in range(channels):
        value = (fill[c] if channels == 3 else fill.mean()).to(device=out.device, dtype=out.dtype)
        out[..., c, :, :] = torch.where(mask, value, out[..., c, :, :])
    return out


@dataclass(frozen=True)
class Damage:
    """One kind of camera damage at three severities, mild to severe, for the robustness evaluation."""

    name: str
    what: str  # what it simulates, for the report and the docs
    parameter: str  # the name of its severity's unit
    levels: tuple[float, float, float]
    apply: Callable[[torch.Tensor, float, int], torch.Tensor]  # (images, level, seed) -> damaged images

    def setting(self, severity: int) -> str:
        """``severity`` (1..3) in words, e.g. ``quality 25``."""
        return f"{self.parameter} {self.levels[severity - 1]:g}"


DAMAGES: tuple[Damage, ...] = (
    Damage(
        "downscale",
        "a small face in the photo: down to this side, back up",
        "side px",
        (64, 40, 24),
        lambda x, v, s: downscale(x, int(v)),
    ),
    Damage(
        "greyscale", "colour lost: saturation kept", "saturation", (0.5, 0.25, 0.0), lambda x, v, s: greyscale(x, v)
    ),
    Damage("jpeg", "JPEG compression", "quality", (50, 25, 10), lambda x, v, s: jpeg(x, int(v))),
    Damage("blur", "Gaussian blur at the input size", "sigma px", (1.0, 2.0, 3.0), lambda x, v, s: blur(x, v)),
    Damage("noise", "Gaussian sensor noise", "std", (0.04, 0.08, 0.12), lambda x, v, s: noise(x, v, s)),
    Damage("underexposure", "too dark: values times", "factor", (0.6, 0.4, 0.25), lambda x, v, s: exposure(x, v)),
    Damage(
        "overexposure", "too bright: values times, clipped", "factor", (1.4, 1.8, 2.2), lambda x, v, s: exposure(x, v)
    ),
    Damage(
        "occlude_eyes",
        "sunglasses: a dark bar over the eyes",
        "area",
        (0.08, 0.12, 0.16),
        lambda x, v, s: occlude(x, "eyes", v),
    ),
    Damage(
        "occlude_mouth",
        "a hand: a skin-coloured blob over the mouth",
        "area",
        (0.06, 0.10, 0.14),
        lambda x, v, s: occlude(x, "mouth", v),
    ),
)


def damage_names() -> list[str]:
    return [d.name for d in DAMAGES]


def get_damage(name: str) -> Damage:
    for candidate in DAMAGES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown damage {name!r}; known: {', '.join(damage_names())}")


def damaged(images: FaceArray, damage: Damage, severity: int, seed: int = 0, chunk: int = 256) -> np.ndarray:
    """uint8 NHWC ``images`` (decoded, or decoded a chunk at a time from a converted dataset) with ``damage`` at ``severity`` (1..3); the same result for the same ``seed``."""
    if severity not in (1, 2, 3):
        raise ValueError(f"severity is 1, 2 or 3, not {severity}")
    level = damage.levels[severity - 1]
    out = np.empty(images.shape, np.uint8)
    for start in range(0, len(images), chunk):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + chunk])).permute(0, 3, 1, 2)
        result = damage.apply(batch, level, seed * 1000 + start)
        out[start : start + chunk] = result.permute(0, 2, 3, 1).numpy()
    return out
