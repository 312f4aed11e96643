"""The training augmentation, described once (``AugmentConfig`` -> ``describe``) and built for two places: the
loader's processes (torchvision v2, one uint8 CHW image at a time) and the training device (kornia, a float
batch in 0..1 with parameters drawn per sample, ``train.augment_on: device``).

Each op of the description maps to the library op of each side with the same parameter law, which
``tests/test_augment.py`` checks by sampling both. Camera damage the libraries lack (downscale-and-back, and the
occluders) is one module here, used by both sides, over the functions of ``affectlab.data.damage``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from affectlab.config import CAMERA_DAMAGE, AugmentConfig
from affectlab.data.damage import CENTRES, SKIN_TONES, SUNGLASSES, blur_kernel, downscale, occlude
from affectlab.extras import require

if TYPE_CHECKING:
    from torchvision.transforms import v2

__all__ = ["AugmentOp", "RandomDownscale", "RandomOccluder", "describe", "device_pipeline", "loader_pipeline"]

#: How far a training occluder's centre moves from its place (a share of the side, uniform either way).
OCCLUDER_JITTER = 0.04
ERASE_RATIO = (0.3, 3.3)  # the erased rectangle's height / width, log-uniform (torchvision's default)


@dataclass(frozen=True)
class AugmentOp:
    """One step of the augmentation: its name, the probability that a face gets it, and its parameters."""

    name: str
    p: float
    params: dict[str, Any] = field(default_factory=dict)


def describe(spec: AugmentConfig) -> list[AugmentOp]:
    """The ops ``spec`` asks for, in order: camera damage that is on, then flip, affine, colour jitter, erasing."""
    damage: dict[str, dict[str, Any]] = {
        "occlude_eyes": {"area": tuple(spec.occluder_area)},
        "occlude_mouth": {"area": tuple(spec.occluder_area)},
        "exposure": {"factor": tuple(spec.exposure_factor)},
        "blur": {"sigma": tuple(spec.blur_sigma)},
        "noise": {"std": spec.noise_std},
        "downscale": {"px": tuple(spec.downscale_px)},
        "greyscale": {},
        "jpeg": {"quality": tuple(spec.jpeg_quality)},
    }
    ops = [AugmentOp(name, getattr(spec, name), damage[name]) for name in CAMERA_DAMAGE if getattr(spec, name) > 0]
    colour = {"brightness": spec.brightness, "contrast": spec.contrast, "saturation": spec.saturation, "hue": spec.hue}
    return [
        *ops,
        AugmentOp("flip", spec.flip),
        AugmentOp("affine", 1.0, {"degrees": spec.degrees, "translate": spec.translate, "scale": tuple(spec.scale)}),
        AugmentOp("colour", 1.0, colour),
        AugmentOp("erase", spec.erase, {"area": tuple(spec.erase_area)}),
    ]


# ---------------------------------------------------------------------------------------------------------------
# The two ops no library has, as modules both pipelines use (CHW or NCHW, uint8 or float; torch's global RNG)
# ---------------------------------------------------------------------------------------------------------------


class RandomDownscale(nn.Module):
    """With probability ``p``: down to a side uniform in ``px`` (integers, both ends included), then back up."""

    def __init__(self, p: float, px: tuple[int, int]) -> None:
        super().__init__()
        self.p, self.px = p, px

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        return {"apply": torch.rand(n) < self.p, "px": torch.randint(self.px[0], self.px[1] + 1, (n,))}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch = images if images.ndim == 4 else images.unsqueeze(0)
        params = self.sample(len(batch))
        out = batch.clone()
        for i in torch.nonzero(params["apply"]).flatten().tolist():
            out[i] = downscale(batch[i], int(params["px"][i]))
        return out if images.ndim == 4 else out[0]


class RandomOccluder(nn.Module):
    """With probability ``p``: a sunglasses bar (``region="eyes"``) or a hand-like blob (``"mouth"``) of an area
    uniform in ``area``, its centre moved up to ``OCCLUDER_JITTER`` either way; a hand gets one of four skin tones."""

    def __init__(self, region: str, p: float, area: tuple[float, float]) -> None:
        super().__init__()
        self.region, self.p, self.area = region, p, area

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        return {
            "apply": torch.rand(n) < self.p,
            "area": torch.empty(n).uniform_(*self.area),
            "shift": torch.empty(n, 2).uniform_(-OCCLUDER_JITTER, OCCLUDER_JITTER),
            "tone": torch.randint(0, len(SKIN_TONES), (n,)),
        }

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch = images if images.ndim == 4 else images.unsqueeze(0)
        params = self.sample(len(batch))
        out = batch.clone()
        cx, cy = CENTRES[self.region]
        for i in torch.nonzero(params["apply"]).flatten().tolist():
            dx, dy = params["shift"][i].tolist()
            colour = SUNGLASSES if self.region == "eyes" else SKIN_TONES[int(params["tone"][i])]
            out[i] = occlude(batch[i], self.region, float(params["area"][i]), (cx + dx, cy + dy), colour)  # type: ignore[arg-type]
        return out if images.ndim == 4 else out[0]


def _hand_written(op: AugmentOp) -> nn.Module | None:
    if op.name == "downscale":
        return RandomDownscale(op.p, op.params["px"])
    if op.name in ("occlude_eyes", "occlude_mouth"):
        return RandomOccluder(op.name.removeprefix("occlude_"), op.p, op.params["area"])
    return None


# ---------------------------------------------------------------------------------------------------------------
# torchvision v2: the loader's processes, one uint8 CHW image at a time
# ---------------------------------------------------------------------------------------------------------------


def loader_pipeline(spec: AugmentConfig) -> v2.Compose:
    """The torchvision v2 pipeline of ``spec`` for a uint8 CHW image."""
    from torchvision.transforms import v2

    return v2.Compose([_torchvision_op(op) for op in describe(spec)])


def _torchvision_op(op: AugmentOp) -> Any:
    from torchvision.transforms import v2

    q = op.params
    own = _hand_written(op)
    if own is not None:
        return own
    if op.name == "flip":
        return v2.RandomHorizontalFlip(op.p)
    if op.name == "affine":
        return v2.RandomAffine(degrees=q["degrees"], translate=(q["translate"], q["translate"]), scale=q["scale"])
    if op.name == "colour":
        return v2.ColorJitter(
            brightness=q["brightness"], contrast=q["contrast"], saturation=q["saturation"], hue=q["hue"]
        )
    if op.name == "erase":
        return v2.RandomErasing(p=op.p, scale=q["area"], ratio=ERASE_RATIO, value=0)
    if op.name == "greyscale":
        return v2.RandomGrayscale(op.p)
    inner = {
        "jpeg": lambda: v2.JPEG(quality=q["quality"]),
        "blur": lambda: v2.GaussianBlur(blur_kernel(q["sigma"][1]), sigma=q["sigma"]),
        "noise": lambda: v2.GaussianNoise(sigma=q["std"]),
        "exposure": lambda: v2.ColorJitter(brightness=q["factor"]),
    }[op.name]()
    return v2.RandomApply([inner], p=op.p)


# ---------------------------------------------------------------------------------------------------------------
# kornia: the training device, a float batch in 0..1, parameters per sample
# ---------------------------------------------------------------------------------------------------------------


def device_pipeline(spec: AugmentConfig) -> nn.Sequential:
    """The kornia pipeline of ``spec`` for a float NCHW batch in 0..1 (needs ``affectlab[scale]``)."""
    return nn.Sequential(*(_kornia_op(op) for op in describe(spec)))


def _kornia_op(op: AugmentOp) -> nn.Module:
    K = require("kornia.augmentation", "train.augment_on=device")
    q = op.params
    own = _hand_written(op)
    if own is not None:
        return own
    if op.name == "flip":
        return K.RandomHorizontalFlip(p=op.p)
    if op.name == "affine":
        # Nearest neighbour, as torchvision's RandomAffine samples by default.
        translate = (q["translate"], q["translate"])
        return K.RandomAffine(q["degrees"], translate=translate, scale=q["scale"], resample="nearest", p=1.0)
    if op.name == "colour":
        # ColorJitter, not ColorJiggle: torchvision's formulas (brightness multiplies, contrast blends with the mean)
        return K.ColorJitter(q["brightness"], q["contrast"], q["saturation"], q["hue"], p=1.0)
    if op.name == "erase":
        return _log_ratio_erasing(K)(p=op.p, scale=q["area"], ratio=ERASE_RATIO, value=0.0)
    if op.name == "greyscale":
        return K.RandomGrayscale(p=op.p)
    if op.name == "jpeg":
        return K.RandomJPEG(jpeg_quality=tuple(float(v) for v in q["quality"]), p=op.p)
    if op.name == "blur":
        return K.RandomGaussianBlur(blur_kernel(q["sigma"][1]), q["sigma"], p=op.p)
    if op.name == "noise":  # clipped to 0..1 afterwards, as torchvision's GaussianNoise does
        return nn.Sequential(K.RandomGaussianNoise(std=q["std"], p=op.p), _Clip())
    if op.name == "exposure":
        return K.ColorJitter(brightness=q["factor"], p=op.p)
    raise ValueError(f"unknown augmentation op {op.name!r}")


class _Clip(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.clamp(0.0, 1.0)


def _log_ratio_erasing(K: Any) -> type:
    """kornia's RandomErasing with torchvision's law for the rectangle: the area uniform in ``scale`` and the
    height/width ratio log-uniform in ``ratio`` (kornia draws it uniform below and above 1, a different law)."""

    class LogRatioErasing(K.RandomErasing):  # type: ignore[misc, name-defined]
        def generate_parameters(self, batch_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
            params = super().generate_parameters(batch_shape)
            n, (height, width) = batch_shape[0], batch_shape[-2:]
            low, high = self.flags_scale
            area = torch.empty(n).uniform_(low, high) * height * width
            ratio = torch.exp(torch.empty(n).uniform_(math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])))
            h = torch.sqrt(area * ratio).round().clamp(1, height - 1)
            w = torch.sqrt(area / ratio).round().clamp(1, width - 1)
            like = params["heights"]
            params["heights"], params["widths"] = h.to(like), w.to(like)
            params["ys"] = (torch.rand(n) * (height - h + 1)).floor().to(like)
            params["xs"] = (torch.rand(n) * (width - w + 1)).floor().to(like)
            return params

        def __init__(self, *args: Any, scale: tuple[float, float], **kwargs: Any) -> None:
            super().__init__(*args, scale=scale, **kwargs)
            self.flags_scale = scale

    return LogRatioErasing
