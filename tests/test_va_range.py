"""Valence and arousal stay in [-1, 1] on every path: PyTorch, the ONNX graph, and the records (issue 37).

The model's head is driven past 1 by a valence bias of 5; every face must then read ``valence == 1.0``. Values
already inside the range must come out bit for bit as the head gave them (a clamp, not a tanh), and an ONNX file
exported before the graph clipped must still give records inside the range.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from support.models import INPUT_SIZE, demo_faces, make_run, one_torch_thread

import affectlab
import affectlab.export.graph as graph_module
import affectlab.models.outputs as outputs_module
from affectlab.export.onnx import export_onnx
from affectlab.models.checkpoint import checkpoint_bytes, load_checkpoint
from affectlab.models.outputs import head_outputs, raw_images
from affectlab.runtime.backends import OnnxBackend, TorchBackend
from affectlab.runtime.results import FaceResult, ImageResult

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def saturated(work: Path) -> Path:
    """A run whose valence head has a bias of 5 (far past 1) and whose arousal head is left as it was."""
    model, meta = load_checkpoint(make_run(work, "multitask"))
    with torch.no_grad():
        assert model.va_head is not None
        model.va_head[-1].bias[0] = 5.0
    folder = work / "saturated"
    folder.mkdir()
    (folder / "model.pt").write_bytes(checkpoint_bytes(model, meta))
    return folder


@pytest.fixture(scope="module")
def crops(work: Path) -> np.ndarray:
    faces = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), (INPUT_SIZE, INPUT_SIZE)) for f in demo_faces(work, 1)]
    return np.stack(faces)


def test_head_outputs_clip_out_of_range_and_keep_in_range_bits() -> None:
    inside = torch.tensor([[0.999999, -1.0], [0.1234567, 1.0], [-0.75, 0.0]])
    assert torch.equal(head_outputs({"va": inside})["va"], inside)  # bit-identical: no tanh, no rescale
    clipped = head_outputs({"va": torch.tensor([[1.022878, -3.0], [0.5, 7.0]])})["va"]
    assert clipped.tolist() == [[1.0, -1.0], [0.5, 1.0]]


def test_training_output_keeps_its_gradient(saturated: Path) -> None:
    """The clip is on the prediction path, not in ``forward``: the loss on an out-of-range head still pulls it."""
    model, _ = load_checkpoint(saturated)
    model.train()
    va = model(torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE))["va"]
    assert bool((va[:, 0] > 1).all())
    (va[:, 0] - 1).pow(2).sum().backward()
    assert model.va_head is not None and model.va_head[-1].bias.grad is not None
    assert float(model.va_head[-1].bias.grad[0]) > 0


def test_pytorch_and_onnx_clip_valence_and_leave_arousal(saturated: Path, crops: np.ndarray, work: Path) -> None:
    model, meta = load_checkpoint(saturated)
    raw = raw_images(model, crops, meta.preprocess)["va"]
    assert bool((raw[:, 0] > 1).all())  # the head really is past the range
    onnx_path = export_onnx(saturated, work / "saturated.onnx")
    for backend in (TorchBackend(saturated), OnnxBackend(onnx_path)):
        va = backend.run(crops)["va"]
        assert (va[:, 0] == 1.0).all()
        inside = (raw[:, 1].abs() < 1).numpy()
        assert inside.any()
        np.testing.assert_allclose(va[inside, 1], raw[inside, 1].numpy(), atol=1e-5, rtol=0)
    records = ImageResult("x.png", [FaceResult.from_outputs(TorchBackend(saturated).run(crops), 0, (0, 0, 1, 1))])
    assert records.records()[0]["valence"] == 1.0


def test_an_onnx_file_without_the_clip_still_gives_records_in_range(
    saturated: Path, crops: np.ndarray, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export made before the clip: its graph returns 5-ish valence; the record path clips it."""
    unclipped = outputs_module.head_outputs

    def old_head_outputs(out: dict[str, torch.Tensor], calibration: object = None) -> dict[str, torch.Tensor]:
        result = unclipped(out, calibration)  # type: ignore[arg-type]
        if "va" in out:
            result["va"] = out["va"].float()
        return result

    # The graph module and the self-check's reference (predict_images) each hold the function: patch both.
    monkeypatch.setattr(graph_module, "head_outputs", old_head_outputs)
    monkeypatch.setattr(outputs_module, "head_outputs", old_head_outputs)
    old = export_onnx(saturated, work / "old.onnx")
    monkeypatch.undo()
    assert (OnnxBackend(old).run(crops)["va"][:, 0] > 1).all()  # the old graph does not clip
    image = cv2.resize(crops[0], (96, 96))
    faces = affectlab.load(old, detector="none").predict(image)
    assert faces[0].valence == 1.0 and -1 <= faces[0].arousal <= 1  # type: ignore[operator]


def test_record_path_keeps_in_range_values_exactly() -> None:
    va = np.array([[0.123456789, -0.987654321]], dtype=np.float32)
    face = FaceResult.from_outputs({"va": va}, 0, (0, 0, 1, 1))
    assert face.valence == float(va[0, 0]) and face.arousal == float(va[0, 1])
    assert FaceResult.from_outputs({"va": np.array([[1.3, -1.7]])}, 0, (0, 0, 1, 1)).arousal == -1.0
