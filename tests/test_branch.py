"""``model.branch``: FaceMesh's face-trained features fused with the backbone's (issue 27). The branch sees each
face in its own convention, trains only when asked, and the fused model goes through training, checkpoints,
ONNX export and prediction like any other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from support.models import one_torch_thread

import affectlab
from affectlab.config import ModelConfig
from affectlab.data.transforms import Preprocess
from affectlab.errors import AffectlabError
from affectlab.models.affect_model import create_model
from affectlab.models.branch import build_branch
from affectlab.models.facemesh import load_facemesh

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_the_branch_sees_the_face_as_facemesh_was_trained_to() -> None:
    """Backbone-normalised 160 px input in; out: FaceMesh's pooled trunk features of the same face in [0, 1] at
    192 px, with its packaged weights."""
    branch = build_branch("facemesh", "imagenet", 160, *IMAGENET).eval()
    face = np.ascontiguousarray(data.astronaut()[20:220, 150:350])  # the astronaut's face, a real one
    crop = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 255.0
    crop = F.interpolate(crop, size=(160, 160), mode="bilinear", align_corners=False)
    normalised = Preprocess(160, *IMAGENET).normalise(torch.from_numpy(face[None]))
    normalised = F.interpolate(normalised, size=(160, 160), mode="bilinear", align_corners=False)
    reference_trunk = load_facemesh().feature_trunk().eval()
    with torch.no_grad():
        expected = reference_trunk(F.interpolate(crop, size=(192, 192), mode="bilinear", align_corners=False))
        got = branch(normalised)
    np.testing.assert_allclose(got.numpy(), expected.mean((2, 3)).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("branch_freeze", [True, False])
def test_the_branch_trains_only_when_it_is_not_frozen(branch_freeze: bool) -> None:
    config = ModelConfig(
        weights="none", task="multitask", input_size=64, freeze=False, branch="facemesh", branch_freeze=branch_freeze
    )
    model = create_model(config).train()
    assert model.branch is not None and model.expression_head is not None
    assert model.expression_head[0].in_features == 1280 + 128  # MobileNetV2's features, then FaceMesh's
    assert not any(p is q for p in model.head_parameters() for q in model.branch.parameters())
    assert model.branch.training is not branch_freeze  # a frozen branch keeps its BatchNorm-free trunk in eval
    out = model(torch.rand(3, 3, 64, 64))
    (out["expression"].logsumexp(1).mean() + out["va"].square().mean()).backward()
    assert all(p.grad is not None for p in model.trunk.parameters())
    branch_grads = [p.grad is not None and p.grad.abs().sum() > 0 for p in model.branch.parameters()]
    assert all(branch_grads) if not branch_freeze else not any(branch_grads)


def test_a_model_without_a_branch_keeps_its_parameters_and_checkpoint_keys() -> None:
    plain = create_model(ModelConfig(weights="none", task="multitask", input_size=64))
    assert plain.branch is None and not any(name.startswith("branch.") for name in plain.state_dict())
    assert plain.expression_head is not None and plain.expression_head[0].in_features == 1280


@pytest.mark.slow
def test_a_fused_model_trains_exports_and_predicts(demo_data: Path, tmp_path: Path) -> None:
    run = affectlab.train(
        data=str(demo_data),
        out=tmp_path / "run",
        progress=False,
        weights="none",
        freeze=False,
        input_size=64,
        epochs=1,
        task="multitask",
        sets=["model.branch=facemesh", "model.branch_freeze=false", "train.robustness=false"],
    )
    assert run.metrics.accuracy is not None
    crops = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    torch_out = affectlab.load(run.path, backend="torch", detector="none").backend.run(crops)
    onnx_out = affectlab.load(run.path, backend="onnx", detector="none").backend.run(crops)  # exported on first use
    np.testing.assert_allclose(onnx_out["probs"], torch_out["probs"], atol=1e-5)
    np.testing.assert_allclose(onnx_out["va"], torch_out["va"], atol=1e-5)
    result = affectlab.load(run.path, detector="none").predict(data.astronaut())
    assert len(result) == 1 and result[0].label is not None


def test_an_unknown_branch_is_one_line(demo_data: Path, tmp_path: Path) -> None:
    with pytest.raises(AffectlabError, match="model.branch: unknown backbone 'facenet'"):
        affectlab.train(data=str(demo_data), out=tmp_path / "run", sets=["model.branch=facenet"])
