"""The one augmentation spec: the loader (torchvision) and device (kornia) pipelines built from it draw the same
parameter laws, the default pipeline is the one every recipe trained with, and camera damage stays off unless asked.

Statistical comparisons use many draws from fixed seeds, and a tolerance of 5 standard errors of the difference
of the two sample means (or standard deviations), so they are deterministic and far from their threshold when the
laws agree, and a law that differs (kornia's own erasing ratio, ColorJiggle's additive brightness) fails them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from affectlab.config import CAMERA_DAMAGE, AugmentConfig, resolve_config
from affectlab.data.augment import RandomDownscale, RandomOccluder, describe, device_pipeline, loader_pipeline
from affectlab.errors import AffectlabError

pytest.importorskip("kornia")

N = 4000
SIZE = 32
#: Every op on, with probabilities that are neither 0 nor 1.
FULL = AugmentConfig(
    downscale=0.3, greyscale=0.4, jpeg=0.5, blur=0.6, noise=0.35, exposure=0.45, occlude_eyes=0.2, occlude_mouth=0.25
)


def _same_law(a: np.ndarray, b: np.ndarray, what: str) -> None:
    """Equal means and standard deviations within 5 standard errors of their difference."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    se_mean = math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) <= 5 * se_mean + 1e-12, f"{what}: means {a.mean():.4f} vs {b.mean():.4f}"
    se_std = math.sqrt(a.var() / (2 * len(a)) + b.var() / (2 * len(b)))
    assert abs(a.std() - b.std()) <= 5 * se_std + 1e-12, f"{what}: stds {a.std():.4f} vs {b.std():.4f}"


def _torchvision_params(op: Any, n: int) -> dict[str, np.ndarray]:
    """n parameter draws of a torchvision op (the inner op of a RandomApply), by name."""
    inner = op.transforms[0] if isinstance(op, v2.RandomApply) else op
    image = torch.zeros(3, SIZE, SIZE, dtype=torch.uint8)
    draws = [inner.make_params([image]) for _ in range(n)]
    out: dict[str, list[float]] = {}
    for d in draws:
        if "angle" in d:  # RandomAffine
            out.setdefault("angle", []).append(d["angle"])
            out.setdefault("tx", []).append(d["translate"][0])
            out.setdefault("ty", []).append(d["translate"][1])
            out.setdefault("scale", []).append(d["scale"])
        elif "brightness_factor" in d:  # ColorJitter
            for key in ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor"):
                if d[key] is not None:
                    out.setdefault(key, []).append(d[key])
        elif "h" in d:  # RandomErasing
            out.setdefault("height", []).append(d["h"])
            out.setdefault("width", []).append(d["w"])
            out.setdefault("top", []).append(d["i"])
            out.setdefault("left", []).append(d["j"])
        elif "quality" in d:
            out.setdefault("quality", []).append(d["quality"])
        elif "sigma" in d:
            out.setdefault("sigma", []).append(d["sigma"][0])
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _kornia_params(op: Any, n: int, name: str) -> dict[str, np.ndarray]:
    d = op.forward_parameters(torch.Size([n, 3, SIZE, SIZE]))
    renames = {
        "angle": "angle",
        "brightness_factor": "brightness_factor",
        "contrast_factor": "contrast_factor",
        "saturation_factor": "saturation_factor",
        "hue_factor": "hue_factor",
        "heights": "height",
        "widths": "width",
        "ys": "top",
        "xs": "left",
        "jpeg_quality": "quality",
        "sigma": "sigma",
    }
    out = {new: d[old].double().numpy() for old, new in renames.items() if old in d}
    if "translations" in d:
        out["tx"], out["ty"] = d["translations"][:, 0].double().numpy(), d["translations"][:, 1].double().numpy()
        out["scale"] = d["scale"][:, 0].double().numpy()
    if name == "exposure":  # a ColorJitter of brightness only (kornia draws the neutral factors too)
        out = {"brightness_factor": out["brightness_factor"]}
    return out


def _probability(op: Any) -> float:
    return float(op.p) if hasattr(op, "p") else 1.0


def test_both_pipelines_draw_every_op_from_the_same_law() -> None:
    torch.manual_seed(0)
    ops = describe(FULL)
    loader, device = loader_pipeline(FULL).transforms, list(device_pipeline(FULL))
    assert [op.name for op in ops] == [
        "occlude_eyes", "occlude_mouth", "exposure", "blur", "noise", "downscale", "greyscale", "jpeg",
        "flip", "affine", "colour", "erase",
    ]  # fmt: skip
    assert len(loader) == len(device) == len(ops)
    compared = set()
    for op, tv, kornia in zip(ops, loader, device, strict=True):
        if op.name == "noise":
            kornia = kornia[0]  # followed by the clip to 0..1 that torchvision's GaussianNoise has built in
            assert kornia._param_generator.std == tv.transforms[0].sigma == FULL.noise_std
        # the probability that a face gets the op: the description's, on both sides, and kornia draws it so
        assert _probability(tv) == pytest.approx(op.p) and _probability(kornia) == pytest.approx(op.p)
        if isinstance(tv, (RandomDownscale, RandomOccluder)):
            assert type(tv) is type(kornia)  # hand-written: one module serves both pipelines
            continue
        if op.p < 1:
            drawn = kornia.forward_parameters(torch.Size([N, 3, SIZE, SIZE]))["batch_prob"].float().mean().item()
            assert abs(drawn - op.p) < 5 * math.sqrt(op.p * (1 - op.p) / N)
        a, b = _torchvision_params(tv, N), _kornia_params(kornia, N, op.name)
        assert a.keys() == b.keys()
        for key in a:
            _same_law(a[key], b[key], f"{op.name}.{key}")
            compared.add(f"{op.name}.{key}")
    assert {"affine.angle", "affine.tx", "affine.scale", "colour.hue_factor", "erase.height", "erase.width"} <= compared
    assert {"jpeg.quality", "blur.sigma", "exposure.brightness_factor"} <= compared


def _statistics(images: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: mean level, contrast, colourfulness, left-right balance and the share of black pixels."""
    x = images.double() / (255 if not images.is_floating_point() else 1)
    half = x.shape[-1] // 2
    return {
        "mean": x.mean((1, 2, 3)).numpy(),
        "contrast": x.std((1, 2, 3)).numpy(),
        "colour": x.std(1).mean((1, 2)).numpy(),
        "left_minus_right": (x[..., :half].mean((1, 2, 3)) - x[..., half:].mean((1, 2, 3))).numpy(),
        "black": (x.amax(1) < 0.5 / 255).double().mean((1, 2)).numpy(),
    }


def _probe() -> torch.Tensor:
    """A colourful image, brighter on the left, so flips, colour and erasing all move the statistics."""
    y, x = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    rgb = torch.stack([0.8 - 0.5 * x, 0.3 + 0.4 * y, 0.5 + 0.3 * torch.sin(6 * x * y)])
    return (rgb * 255).round().to(torch.uint8)


@pytest.mark.parametrize("spec", [AugmentConfig(), FULL], ids=["default", "camera-damage"])
def test_both_pipelines_change_a_probe_image_alike(spec: AugmentConfig) -> None:
    n = 600
    probe = _probe()
    torch.manual_seed(1)
    loader = loader_pipeline(spec)
    by_loader = torch.stack([loader(probe) for _ in range(n)])
    by_device = device_pipeline(spec)(probe.float().div(255).unsqueeze(0).repeat(n, 1, 1, 1))
    a, b = _statistics(by_loader), _statistics(by_device)
    for key in a:
        _same_law(a[key], b[key], key)


def test_the_default_pipeline_is_the_one_recipes_trained_with() -> None:
    before = v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=10, translate=(0.08, 0.08), scale=(0.9, 1.1)),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.2, hue=0.02),
            v2.RandomErasing(p=0.25, scale=(0.02, 0.15), value=0),
        ]
    )
    now = loader_pipeline(resolve_config("reference", sets=["train.augment=true"]).augment)
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8))
    for seed in range(10):
        torch.manual_seed(seed)
        expected = before(image)
        torch.manual_seed(seed)
        assert torch.equal(now(image), expected)


def test_camera_damage_is_off_unless_asked_and_needs_augment_on() -> None:
    assert not resolve_config("reference", sets=["train.augment=true"]).augment.camera_damage()
    best = resolve_config("best").augment  # the best recipe trains for real cameras (issue 22's ablation)
    assert [d.name for d in describe(best)][:8] == list(CAMERA_DAMAGE)
    assert (best.downscale, best.jpeg, best.occlude_eyes) == (0.25, 0.2, 0.05)
    cfg = resolve_config("reference", sets=["train.augment=true", "augment.jpeg=0.3", "augment.jpeg_quality=[20, 60]"])
    assert describe(cfg.augment)[0].name == "jpeg"
    assert describe(cfg.augment)[0].params == {"quality": (20, 60)}
    with pytest.raises(AffectlabError, match="augment.jpeg needs train.augment: true"):
        resolve_config("best", sets=["augment.jpeg=0.3", "train.augment=false"])
    with pytest.raises(AffectlabError, match="augment.blur=1.5 is a probability"):
        resolve_config("best", sets=["augment.blur=1.5"])
    with pytest.raises(AffectlabError, match=r"augment.downscale_px=\[96, 24\] must be \[low, high\]"):
        resolve_config("best", sets=["augment.downscale_px=[96, 24]"])


def test_hand_written_damage_keeps_shape_and_dtype_and_draws_per_sample() -> None:
    torch.manual_seed(0)
    batch = _probe().unsqueeze(0).repeat(16, 1, 1, 1)
    for module in (RandomDownscale(1.0, (8, 16)), RandomOccluder("eyes", 1.0, (0.05, 0.15))):
        for images in (batch, batch.float() / 255, batch[0]):
            out = module(images)
            assert out.shape == images.shape and out.dtype == images.dtype
        out = module(batch)
        assert len({out[i].numpy().tobytes() for i in range(16)}) > 4  # parameters drawn per face
    assert torch.equal(RandomOccluder("mouth", 0.0, (0.05, 0.15))(batch), batch)  # p = 0: untouched
