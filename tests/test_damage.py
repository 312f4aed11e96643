"""Camera damage is applied with the severity it states: each is measured back from the damaged image."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from affectlab.data.damage import (
    CENTRES,
    DAMAGES,
    blur,
    damaged,
    downscale,
    exposure,
    get_damage,
    greyscale,
    jpeg,
    noise,
    occlude,
)

SIZE = 128


def _photo(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """A smooth colourful image with some texture (uint8 HWC), far from clipping."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([0.5 + 0.3 * np.sin(5 * x + 1), 0.45 + 0.25 * np.cos(4 * y), 0.4 + 0.2 * np.sin(7 * x * y)], -1)
    rgb += rng.normal(0, 0.03, rgb.shape)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).contiguous()


def _grating(cycles: float, size: int = 256) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) + 0.5
    wave = 0.5 + 0.4 * torch.cos(2 * math.pi * cycles * x / size)
    return wave.view(1, 1, -1).expand(3, size, size).float().contiguous()


def _amplitude(image: torch.Tensor, cycles: float) -> float:
    """The amplitude of one horizontal frequency along a row, relative to the grating's 0.4."""
    row = image[0].double().mean(0)
    x = torch.arange(len(row), dtype=torch.float64) + 0.5
    basis = torch.exp(-2j * math.pi * cycles * x / len(row))
    return float(2 * abs((row - row.mean()) * basis).mean() / 0.4)


@pytest.mark.parametrize("px", get_damage("downscale").levels)
def test_downscale_keeps_what_a_face_of_that_side_holds_and_loses_the_rest(px: float) -> None:
    # A pattern well below the side's Nyquist frequency (px / 2 cycles) survives; one above it is gone.
    below, above = 0.3 * px, 0.75 * px
    assert _amplitude(downscale(_grating(below), int(px)), below) > 0.6
    assert _amplitude(downscale(_grating(above), int(px)), above) < 0.15
    # ...and a side 2.5 times larger would have kept the pattern that this one loses
    assert _amplitude(downscale(_grating(above), int(px * 2.5)), above) > 0.6


@pytest.mark.parametrize("saturation", get_damage("greyscale").levels)
def test_greyscale_keeps_the_stated_share_of_colour(saturation: float) -> None:
    image = _chw(_photo()).float() / 255
    spread = (image - image.mean(0)).abs().mean()
    out = greyscale(image, saturation)
    assert (out - out.mean(0)).abs().mean() / spread == pytest.approx(saturation, abs=0.02)


@pytest.mark.parametrize("quality", get_damage("jpeg").levels)
def test_jpeg_is_the_round_trip_at_the_stated_quality(quality: float) -> None:
    image = _photo()
    ours = jpeg(_chw(image), int(quality)).permute(1, 2, 0).numpy().astype(np.int16)

    def pil(q: int) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=q)
        return np.asarray(Image.open(buffer).convert("RGB")).astype(np.int16)

    errors = {q: float(np.abs(ours - pil(q)).mean()) for q in range(5, 100, 5)}
    assert min(errors, key=errors.__getitem__) == int(quality)  # the quality that reproduces it is the stated one
    assert errors[int(quality)] < 1.0


@pytest.mark.parametrize("sigma", get_damage("blur").levels)
def test_blur_spreads_a_point_by_the_stated_sigma(sigma: float) -> None:
    point = torch.zeros(3, 65, 65)
    point[:, 32, 32] = 1.0
    spread = blur(point, sigma)[0].double()
    offsets = torch.arange(65, dtype=torch.float64) - 32
    measured = math.sqrt(float((spread.sum(0) * offsets**2).sum() / spread.sum()))
    assert measured == pytest.approx(sigma, rel=0.03)  # the kernel keeps +-3 sigma: 1.4% narrower at most


@pytest.mark.parametrize("std", get_damage("noise").levels)
def test_noise_has_the_stated_std_and_comes_from_its_seed(std: float) -> None:
    grey = torch.full((3, SIZE, SIZE), 128, dtype=torch.uint8)
    state = torch.get_rng_state()
    out = noise(grey, std, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the training's random stream is not touched
    assert ((out.float() - 128) / 255).std().item() == pytest.approx(std, rel=0.03)
    assert torch.equal(noise(grey, std, seed=3), out) and not torch.equal(noise(grey, std, seed=4), out)


@pytest.mark.parametrize("damage", ["underexposure", "overexposure"])
def test_exposure_multiplies_by_the_stated_factor(damage: str) -> None:
    dark = (_photo() * 0.4).astype(np.uint8)  # at most 102: never clipped, even at 2.2
    for factor in get_damage(damage).levels:
        out = exposure(_chw(dark), factor)
        assert out.float().mean().item() / _chw(dark).float().mean().item() == pytest.approx(factor, rel=0.02)


@pytest.mark.parametrize("region", ["eyes", "mouth"])
def test_occluders_cover_the_stated_area_where_they_say(region: str) -> None:
    size = 512  # large enough that the pixel grid changes an occluder's area by less than 2%
    image = _chw(_photo(size=size))
    for area in get_damage(f"occlude_{region}").levels:
        covered = (occlude(image, region, area) != image).any(0).double()  # type: ignore[arg-type]
        assert covered.mean().item() == pytest.approx(area, rel=0.03)
        ys, xs = torch.nonzero(covered, as_tuple=True)
        cx, cy = CENTRES[region]
        assert xs.double().mean().item() / size == pytest.approx(cx, abs=0.005)
        assert ys.double().mean().item() / size == pytest.approx(cy, abs=0.005)


def test_every_damage_is_deterministic_and_grows_with_severity() -> None:
    images = np.stack([_photo(seed) for seed in range(3)])
    state = torch.get_rng_state()
    for damage in DAMAGES:
        errors = []
        for severity in (1, 2, 3):
            out = damaged(images, damage, severity, seed=0)
            assert out.shape == images.shape and out.dtype == np.uint8
            assert np.array_equal(out, damaged(images, damage, severity, seed=0))
            errors.append(np.abs(out.astype(np.int16) - images).mean())
        assert errors[0] < errors[1] < errors[2], f"{damage.name}: {errors}"
        assert damage.setting(1).startswith(damage.parameter)
    assert torch.equal(torch.get_rng_state(), state)
