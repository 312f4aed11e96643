"""dlib's face-recognition ResNet as affectlab's own module: equal to dlib on real faces, hash-checked, a backbone
(``face_resnet29``, weights ``face``) that trains in channels_last, exports to ONNX and loads from a checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support.bad_input import damaged_copy
from support.models import one_torch_thread

from affectlab.config import ModelConfig
from affectlab.data.transforms import Preprocess
from affectlab.errors import AffectlabError
from affectlab.models.affect_model import create_model
from affectlab.models.checkpoint import load_checkpoint, save_checkpoint
from affectlab.models.face_resnet import INPUT_SIZE, MEAN_RGB, MIN_INPUT_SIZE, WEIGHTS, FaceResNet29, load_face_resnet
from affectlab.models.weights import resolve_backbone

FIXTURE = Path(__file__).parent / "fixtures" / "dlib_face_reference.npz"
DLIB_FILE = Path("/work/shared/weights/dlib_face_recognition_resnet_model_v1.dat")
_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def _reference() -> tuple[torch.Tensor, np.ndarray]:
    """The chips ``tools/convert_dlib_face.py`` gave dlib (small images enlarged by repetition to 150 px: four
    crops of a real face, then noise), normalised as dlib's input layer does, and dlib's descriptors for them."""
    ref = np.load(FIXTURE)
    small = [*ref["faces"], ref["noise"]]
    chips = np.stack([s.repeat(INPUT_SIZE // len(s), 0).repeat(INPUT_SIZE // len(s), 1) for s in small])
    x = (chips.astype(np.float32) - np.asarray(MEAN_RGB, np.float32)) / 256.0
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), ref["descriptors"]


@pytest.fixture(scope="module")
def net() -> FaceResNet29:
    return load_face_resnet()


def test_packaged_module_matches_dlib(net: FaceResNet29) -> None:
    """The float16-stored weights: 1e-3 (4.4e-4 measured) on descriptors of norm about 1.3. Same person (the face
    and its mirror) under dlib's 0.6, as dlib itself has them."""
    batch, reference = _reference()
    with torch.no_grad():
        descriptors = net(batch).numpy()
    assert np.abs(descriptors - reference).max() < 1e-3
    assert np.linalg.norm(descriptors[0] - descriptors[1]) < 0.45 and np.abs(reference).max() > 0.2


@pytest.mark.skipif(not DLIB_FILE.is_file(), reason="dlib's original file is not on this machine")
def test_conversion_from_dlibs_file_matches_dlib_to_1e4() -> None:
    """The port itself (float32 weights read from dlib's file by the converter): 1e-4 (3.3e-7 measured)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    from convert_dlib_face import read_dat, state_dict

    model = FaceResNet29().eval()
    model.load_state_dict(state_dict(read_dat(DLIB_FILE.read_bytes())))
    batch, reference = _reference()
    with torch.no_grad():
        assert np.abs(model(batch).numpy() - reference).max() < 1e-4


def test_weights_are_small_and_hash_checked(tmp_path: Path) -> None:
    assert WEIGHTS.stat().st_size <= 12 * 1024 * 1024
    assert "CC0" in (WEIGHTS.parent / "MODEL_CARD.md").read_text()
    damaged = damaged_copy(WEIGHTS, tmp_path / "face_resnet29.pt")  # one flipped bit in the middle of the tensors
    with pytest.raises(AffectlabError, match=r"face_resnet29\.pt: SHA-256 .* is not the packaged") as info:
        load_face_resnet(damaged)
    assert "\n" not in str(info.value)
    with pytest.raises(AffectlabError, match="missing or unreadable"):
        load_face_resnet(tmp_path / "absent.pt")


def test_backbone_weights_normalisation_and_size_limit() -> None:
    """``--backbone face_resnet29``: the packaged weights in the trunk, dlib's input convention for [0, 1] inputs
    (``(255 x - mean) / 256``), random init with ``none``, ImageNet refused, too small an input refused."""
    backbone = resolve_backbone("face_resnet29", "face")
    assert backbone.mean == pytest.approx([m / 255 for m in MEAN_RGB]) and backbone.std == pytest.approx(
        [256 / 255] * 3
    )
    assert backbone.description.startswith("packaged with affectlab")
    model = create_model(ModelConfig(backbone="face_resnet29", weights="face", task="multitask", input_size=112))
    packaged = load_face_resnet().state_dict()
    trunk = model.trunk.state_dict()
    assert torch.equal(trunk["0.0.weight"], packaged["stem.0.weight"])
    assert torch.equal(trunk["1.13.conv2.weight"], packaged["blocks.13.conv2.weight"])
    assert not any(name.startswith("fc") for name in trunk)
    random_init = create_model(ModelConfig(backbone="face_resnet29", weights="none", task="classification"))
    assert not torch.equal(random_init.trunk.state_dict()["0.0.weight"], packaged["stem.0.weight"])
    with pytest.raises(AffectlabError, match="face_resnet29 has no ImageNet weights: use --weights face"):
        create_model(ModelConfig(backbone="face_resnet29", weights="imagenet", task="classification"))
    with pytest.raises(AffectlabError, match=f"needs model.input_size >= {MIN_INPUT_SIZE}"):
        create_model(ModelConfig(backbone="face_resnet29", weights="none", input_size=MIN_INPUT_SIZE - 1))
    with torch.no_grad():  # the limit is the network's own: one pixel less and a convolution has nothing to see
        assert random_init.trunk(torch.rand(1, 3, MIN_INPUT_SIZE, MIN_INPUT_SIZE)).shape == (1, 256, 1, 1)
        with pytest.raises(RuntimeError):
            random_init.trunk(torch.rand(1, 3, MIN_INPUT_SIZE - 1, MIN_INPUT_SIZE - 1))


def test_trains_in_channels_last() -> None:
    """Every trunk parameter gets a gradient through the padded adds; channels_last gives NCHW's outputs."""
    torch.manual_seed(0)
    config = ModelConfig(backbone="face_resnet29", weights="face", task="multitask", input_size=112, freeze=False)
    model = create_model(config).train()
    images = torch.rand(4, 3, 112, 112)
    out = model.to(memory_format=torch.channels_last)(images.contiguous(memory_format=torch.channels_last))
    assert out["expression"].shape == (4, 8) and out["va"].shape == (4, 2)
    (out["expression"].logsumexp(1).mean() + out["va"].square().mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trunk.parameters())
    net = load_face_resnet()
    batch, _ = _reference()
    with torch.no_grad():
        plain = net(batch)
        fast = net.to(memory_format=torch.channels_last)(batch.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)


def test_head_norm_trains_on_cached_features_saves_and_exports(tmp_path: Path) -> None:
    """``model.head_norm``: BatchNorm1d on the pooled features, as part of the head (so the feature cache of a frozen
    trunk trains it), also for a one-sample batch; it survives a checkpoint and the ONNX export."""
    from affectlab.export.onnx import export_onnx
    from affectlab.runtime.backends import OnnxBackend, TorchBackend

    assert not any("head_norm" in k for k in create_model(ModelConfig(weights="none")).state_dict())  # default off
    torch.manual_seed(0)
    config = ModelConfig(backbone="face_resnet29", weights="face", task="multitask", input_size=112, head_norm=True)
    model = create_model(config).train()
    assert model.trunk_frozen and any(p is model.head_norm.weight for p in model.head_parameters())  # type: ignore[union-attr]
    crops = np.random.default_rng(0).integers(0, 256, (6, 112, 112, 3), dtype=np.uint8)
    backbone = resolve_backbone("face_resnet29", "face")
    preprocess = Preprocess(input_size=112, mean=backbone.mean, std=backbone.std)
    with torch.no_grad():
        features = model.forward_features(preprocess.normalise(torch.from_numpy(crops)))
        normalised = model.head_norm(features)  # type: ignore[misc]
    assert features.std(0).mean() < 0.5 * features.mean().abs()  # dlib's features: far from 0, little spread
    varied = features.std(0) > 0.05  # (a few channels are 0 for every crop: ReLU)
    assert varied.sum() > 100 and normalised.mean(0).abs().max() < 1e-4
    assert (normalised[:, varied].std(0, unbiased=False) - 1).abs().max() < 1e-2
    optimiser = torch.optim.SGD(model.head_parameters(), lr=0.1)
    target = torch.arange(6) % 8
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model.forward_head(features)["expression"], target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert model.forward_head(features[:1])["expression"].shape == (1, 8)  # one sample in training mode
    path = tmp_path / "run" / "model.pt"
    save_checkpoint(path, model.eval(), config, preprocess, note="test model")
    loaded, _ = load_checkpoint(path)
    assert loaded.head_norm is not None and torch.equal(loaded.head_norm.running_mean, model.head_norm.running_mean)  # type: ignore[union-attr]
    torch_out = TorchBackend(path.parent).run(crops)
    onnx_out = OnnxBackend(export_onnx(path, tmp_path / "model.onnx")).run(crops)
    for key in ("probs", "va"):
        assert np.abs(onnx_out[key] - torch_out[key]).max() < 1e-4
    assert torch_out["va"].std(0).min() > 1e-3  # the outputs depend on the input, so the comparison can fail
