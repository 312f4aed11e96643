"""MediaPipe Iris as affectlab's own module: equal to Google's TFLite model, trainable, exportable; and the eye
fields (iris points, eye openness, gaze) that ``predict --eyes`` adds, on scikit-image's public-domain astronaut
photo (a real face) and controlled edits of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from support.bad_input import damaged_copy
from support.models import one_torch_thread

from affectlab.errors import AffectlabError
from affectlab.models.iris import WEIGHTS, load_iris

FIXTURE = Path(__file__).parent / "fixtures" / "iris_reference.npz"
_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def _reference_batch() -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The 64 px inputs ``tools/convert_iris.py`` gave the TFLite model (two real eyes, noise) and its outputs:
    contours 3 x 71 x 3 and iris points 3 x 5 x 3."""
    ref = np.load(FIXTURE)
    images = np.stack([ref[name] for name in ("eye", "other_eye", "noise")])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0, ref["contour"], ref["iris"]


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return load_iris()


def test_module_matches_the_tflite_reference(net: torch.nn.Module) -> None:
    """1e-4 px on points of up to 64 px (1.9e-5 px measured); on the real eyes the iris centre lies inside the lids."""
    batch, contour, iris = _reference_batch()
    with torch.no_grad():
        points, centre_and_rim = net(batch)
    np.testing.assert_allclose(points.numpy(), contour, rtol=0, atol=1e-4)
    np.testing.assert_allclose(centre_and_rim.numpy(), iris, rtol=0, atol=1e-4)
    for eye in range(2):
        lower, upper = contour[eye, 0:9, :2], contour[eye, 9:16, :2]
        cx, cy = iris[eye, 0, :2]
        assert lower[:, 0].min() < cx < lower[:, 0].max() and upper[:, 1].min() < cy < lower[:, 1].max()


def test_weights_are_small_and_hash_checked(tmp_path: Path) -> None:
    assert WEIGHTS.stat().st_size <= 3 * 1024 * 1024
    assert "Apache License" in (WEIGHTS.parent / "MODEL_CARD.md").read_text()
    damaged = damaged_copy(WEIGHTS, tmp_path / "iris_landmark.pt")
    with pytest.raises(AffectlabError, match=r"iris_landmark\.pt: SHA-256 .* is not the packaged"):
        load_iris(damaged)


def test_module_trains() -> None:
    """Every parameter gets a gradient, and one SGD step lowers a point loss."""
    model = load_iris().train()
    batch, contour, iris = _reference_batch()
    target = torch.from_numpy(np.concatenate([contour[:1], iris[:1]], axis=1) + 2.0)  # every point moved 2 px
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        points, centre_and_rim = model(batch[:1])
        loss = torch.nn.functional.mse_loss(torch.cat([points, centre_and_rim], 1), target)
        optimiser.zero_grad()
        loss.backward()
        losses.append(loss.item())
        assert all(p.grad is not None for p in model.parameters())
        optimiser.step()
    assert losses[1] < losses[0]


def test_channels_last_and_onnx_give_the_same_outputs(net: torch.nn.Module, tmp_path: Path) -> None:
    """channels_last in PyTorch, and the module exported to ONNX (batch size free) in ONNX Runtime."""
    batch, contour, iris = _reference_batch()
    fast = load_iris().to(memory_format=torch.channels_last)
    with torch.no_grad():
        points, _ = fast(batch.contiguous(memory_format=torch.channels_last))
    np.testing.assert_allclose(points.numpy(), contour, rtol=0, atol=1e-4)
    path = tmp_path / "iris.onnx"
    torch.onnx.export(
        net,
        (batch,),
        path,
        dynamo=True,
        input_names=["eye"],
        output_names=["contour", "iris"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_contour, onnx_iris = session.run(None, {"eye": batch[:2].numpy()})  # another batch size than exported
    np.testing.assert_allclose(onnx_contour, contour[:2], rtol=0, atol=1e-4)
    np.testing.assert_allclose(onnx_iris, iris[:2], rtol=0, atol=1e-4)
