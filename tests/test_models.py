from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision

from affectlab.config import ModelConfig
from affectlab.data.transforms import Preprocess
from affectlab.errors import AffectlabError
from affectlab.models.affect_model import create_model
from affectlab.models.backbones import get_backbone_spec, list_backbones
from affectlab.models.checkpoint import load_checkpoint, save_checkpoint
from affectlab.models.weights import cache_path, resolve_backbone

FAST_BACKBONES = ["mobilenet_v2", "vgg16", "resnet18"]


def test_registry_lists_study_backbones_and_rejects_unknown() -> None:
    assert {"vgg16", "mobilenet_v2"} <= set(list_backbones())
    with pytest.raises(AffectlabError, match="unknown backbone 'vgg17'; available: .*mobilenet_v2"):
        get_backbone_spec("vgg17")


@pytest.mark.parametrize("backbone", FAST_BACKBONES)
@pytest.mark.parametrize("task", ["classification", "regression", "multitask"])
def test_outputs_follow_task(backbone: str, task: str) -> None:
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone=backbone, weights="none", task=task)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        features = model.pool(model.trunk(x))
    assert features.shape == (2, get_backbone_spec(backbone).feature_dim)
    expected = {"classification": {"expression"}, "regression": {"va"}, "multitask": {"expression", "va"}}[task]
    assert set(out) == expected
    assert (model.expression_head is None) == ("expression" not in expected)
    assert (model.va_head is None) == ("va" not in expected)
    with torch.no_grad():  # each output is its own head applied to the pooled trunk features of the same images
        if "expression" in out:
            assert out["expression"].shape == (2, 8)
            torch.testing.assert_close(out["expression"], model.expression_head(features))
        if "va" in out:
            assert out["va"].shape == (2, 2)
            torch.testing.assert_close(out["va"], model.va_head(features))


def test_head_is_the_reference_studys() -> None:
    model = create_model(ModelConfig(backbone="mobilenet_v2", weights="none", task="classification"))
    layers = list(model.expression_head)
    assert [type(m).__name__ for m in layers] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert layers[0].in_features == 1280 and layers[0].out_features == 256 and layers[2].p == 0.5
    assert layers[3].out_features == 8


def test_frozen_trunk_keeps_batchnorm_statistics() -> None:
    model = create_model(ModelConfig(backbone="mobilenet_v2", weights="none", freeze=True))
    model.train()
    assert not model.trunk.training and model.expression_head.training
    before = [m.running_mean.clone() for m in model.trunk.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    model(torch.randn(4, 3, 64, 64))
    after = [m.running_mean for m in model.trunk.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert not any(p.requires_grad for p in model.trunk.parameters())
    model.freeze_trunk(False)
    model.train()
    assert model.trunk.training and all(p.requires_grad for p in model.trunk.parameters())


@pytest.fixture
def fake_imagenet_file() -> Iterator[tuple[Path, dict[str, torch.Tensor]]]:
    """A state dict with torchvision's keys and shapes, placed under the name torchvision caches it as.

    Removed afterwards whatever the test did, so that no later test finds "ImageNet" weights in the cache.
    """
    spec = get_backbone_spec("mobilenet_v2")
    torch.manual_seed(123)
    state = spec.build(weights=None).state_dict()
    target = cache_path(spec.weights["IMAGENET1K_V1"])
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    try:
        yield target, state
    finally:
        target.unlink(missing_ok=True)


def test_imagenet_weights_in_torchvision_cache_are_hash_checked(
    fake_imagenet_file: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    """A file placed under torchvision's cache name is used only if it is the published file (its SHA-256 starts
    with the hash in its name); the real file is checked in test_bad_input when ../shared is there."""
    target, _ = fake_imagenet_file
    assert target.name == "mobilenet_v2-b0353104.pth"
    assert str(target).startswith(os.environ["TORCH_HOME"])
    with pytest.raises(
        AffectlabError, match=r"mobilenet_v2-b0353104\.pth: SHA-256 starts with [0-9a-f]{8}, not b0353104"
    ):
        create_model(ModelConfig(backbone="mobilenet_v2", weights="imagenet"))


def test_missing_imagenet_weights_say_where_to_put_the_file() -> None:
    with pytest.raises(AffectlabError, match=r"put vgg16-397923af\.pth in .*torch-home/hub/checkpoints"):
        create_model(ModelConfig(backbone="vgg16", weights="imagenet"))


def test_weights_from_path_and_bad_files(tmp_path: Path) -> None:
    state = torchvision.models.mobilenet_v2().state_dict()
    torch.save(state, tmp_path / "w.pth")
    model = create_model(ModelConfig(backbone="mobilenet_v2", weights=str(tmp_path / "w.pth")))
    assert torch.equal(model.trunk[0][0].weight, state["features.0.0.weight"])
    with pytest.raises(AffectlabError, match="does not fit torchvision vgg16"):
        create_model(ModelConfig(backbone="vgg16", weights=str(tmp_path / "w.pth")))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(AffectlabError, match="junk.pth: not a PyTorch state dict"):
        create_model(ModelConfig(backbone="mobilenet_v2", weights=str(tmp_path / "junk.pth")))
    with pytest.raises(AffectlabError, match="weights file not found"):
        create_model(ModelConfig(backbone="mobilenet_v2", weights=str(tmp_path / "none.pth")))


#: ImageNet's per-channel mean and std (RGB), as published with torchvision's IMAGENET1K_V1 weights.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("backbone", FAST_BACKBONES)
@pytest.mark.parametrize("weights", ["imagenet", "none", "IMAGENET1K_V1", "/some/file.pth"])
def test_normalisation_is_imagenets(backbone: str, weights: str) -> None:
    # Every supported backbone was trained on ImageNet with the same statistics; random init and weight files
    # use them too, so a checkpoint and its ONNX export normalise alike.
    resolved = resolve_backbone(backbone, weights)
    mean, std = resolved.mean, resolved.std
    assert mean == pytest.approx(IMAGENET_MEAN) and std == pytest.approx(IMAGENET_STD)
    preprocess = Preprocess(input_size=8, mean=mean, std=std)
    grey = torch.full((1, 3, 8, 8), 128, dtype=torch.uint8)
    expected = [(128 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    torch.testing.assert_close(preprocess.normalise(grey)[0, :, 0, 0], torch.tensor(expected))


def test_checkpoint_round_trip_rebuilds_identical_model(tmp_path: Path) -> None:
    config = ModelConfig(backbone="mobilenet_v2", weights="none", task="multitask", input_size=64)
    model = create_model(config).eval()
    save_checkpoint(tmp_path / "model.pt", model, config, Preprocess(input_size=64), note="x")
    loaded, meta = load_checkpoint(tmp_path)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.allclose(a["expression"], b["expression"]) and torch.allclose(a["va"], b["va"])
    assert meta.class_names[7] == "Contempt" and meta.preprocess.input_size == 64
    assert meta.extra["note"] == "x" and meta.task == "multitask" and meta.calibration is None
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(AffectlabError, match="bad.pt: not an affectlab checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
