"""ONNX export: metadata, dynamic batch, agreement with PyTorch (fp32 to 1e-4; int8 within a stated tolerance)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

import affectlab
from affectlab.cli import main
from affectlab.errors import AffectlabError
from affectlab.inference.backends import OnnxBackend, TorchBackend
from affectlab.labels import EMOTIONS
from inference_support import INPUT_SIZE, demo_faces, make_run, one_torch_thread

#: fp32: the issue's bound on |ONNX Runtime - PyTorch| for probabilities and valence/arousal.
FP32_TOLERANCE = 1e-4
#: int8 (static, per-channel QDQ) on this test model: bounds on the mean |difference| of probabilities and V/A,
#: and on top-class agreement. The test model's trunk has random weights, and random trunks quantise badly (its
#: class decisions hang on small feature differences; even dynamic int8 keeps only half its labels): measured
#: here mean |dp| 0.10, mean |dva| 0.16, agreement 0.43 (chance 0.19), V/A correlation 0.59. The agreement of a
#: model with ImageNet weights is measured on real faces by benchmarks/predict.py. So this test checks that int8
#: stays tied to fp32 (about twice chance agreement, correlated V/A); a broken graph or calibration drops to chance.
INT8_MEAN_PROB_TOLERANCE = 0.15
INT8_MEAN_VA_TOLERANCE = 0.25
INT8_MIN_CLASS_AGREEMENT = 0.30
INT8_MIN_AGREEMENT_OVER_CHANCE = 1.8
INT8_MIN_VA_CORRELATION = 0.4

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def crops(work: Path) -> np.ndarray:
    """Face crops (uint8 NHWC RGB at the model's input size): 32 demo faces and 8 noise images."""
    faces = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), (INPUT_SIZE, INPUT_SIZE)) for f in demo_faces(work, 4)]
    noise = np.random.default_rng(0).integers(0, 256, (8, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    return np.concatenate([np.stack(faces), noise])


@pytest.fixture(scope="module")
def fp32(run: Path, work: Path) -> Path:
    out = work / "exported" / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def int8(run: Path, work: Path) -> Path:
    calibration = work / "calibration"
    calibration.mkdir()
    for i, face in enumerate(demo_faces(work / "calib-src", 3, 96)):
        cv2.imwrite(str(calibration / f"{i}.png"), face)
    assert main(["export", str(run), "--int8", "--calibration", str(calibration)]) == 0
    return run / "model-int8.onnx"


def test_onnx_file_carries_its_metadata_and_a_dynamic_batch(fp32: Path) -> None:
    model = onnx.load(str(fp32))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["class_names"]) == list(EMOTIONS)
    assert json.loads(meta["input_size"]) == INPUT_SIZE and meta["task"] == "multitask"
    assert json.loads(meta["mean"]) == pytest.approx([0.485, 0.456, 0.406])
    assert json.loads(meta["std"]) == pytest.approx([0.229, 0.224, 0.225])
    assert json.loads(meta["face_margin"]) == pytest.approx(0.2)
    assert meta["affectlab_version"] == affectlab.__version__ and meta["quantization"] == "none"
    bundle = json.loads(meta["affectlab"])
    assert bundle["model"]["backbone"] == "mobilenet_v2" and bundle["va_range"] == [-1.0, 1.0]
    (graph_input,) = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "images" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    assert [o.name for o in model.graph.output] == ["expression_probs", "va"]


def test_onnx_runtime_matches_pytorch_to_1e4(run: Path, fp32: Path, crops: np.ndarray) -> None:
    torch_out, onnx_out = TorchBackend(run).run(crops), OnnxBackend(fp32).run(crops)
    assert set(onnx_out) == set(torch_out) == {"probs", "va"}
    for key in ("probs", "va"):
        assert onnx_out[key].shape == torch_out[key].shape == (len(crops), 8 if key == "probs" else 2)
        assert np.max(np.abs(onnx_out[key] - torch_out[key])) <= FP32_TOLERANCE
    # The comparison means something only if the outputs really depend on the input.
    assert torch_out["probs"].std(0).max() > 0.05 and torch_out["va"].std(0).min() > 0.05
    assert len(set(torch_out["probs"].argmax(1))) >= 3
    for batch in (1, 5):  # dynamic batch: any size gives the same rows
        np.testing.assert_allclose(OnnxBackend(fp32).run(crops[:batch])["probs"], onnx_out["probs"][:batch], atol=1e-5)


def test_onnx_file_alone_predicts_like_the_run(run: Path, fp32: Path, work: Path, tmp_path: Path) -> None:
    alone = tmp_path / "model.onnx"
    alone.write_bytes(fp32.read_bytes())  # no run folder next to it
    image = cv2.cvtColor(demo_faces(work / "alone", 1, 96)[5], cv2.COLOR_BGR2RGB)
    from_onnx, from_run = affectlab.load(alone, detector="none"), affectlab.load(run, detector="none")
    assert from_onnx.info.preprocess == from_run.info.preprocess and from_onnx.info.runtime == "onnxruntime"
    a, b = from_onnx.predict(image)[0], from_run.predict(image)[0]
    assert a.label == b.label and np.max(np.abs(a.probs - b.probs)) <= FP32_TOLERANCE
    assert a.valence == pytest.approx(b.valence, abs=FP32_TOLERANCE)
    restored = pickle.loads(pickle.dumps(from_onnx.backend))  # the session is rebuilt, not pickled
    np.testing.assert_allclose(restored.run(np.stack([cv2.resize(image, (64, 64))]))["probs"][0],
                               from_onnx.backend.run(np.stack([cv2.resize(image, (64, 64))]))["probs"][0], atol=1e-6)


def test_int8_agrees_within_the_stated_tolerance(run: Path, int8: Path, crops: np.ndarray) -> None:
    backend = OnnxBackend(int8)
    assert backend.info.extra["quantization"] == "int8-static-qdq"
    assert backend.info.extra["calibration"] == "calibration (24 images)"
    reference, quantised = TorchBackend(run).run(crops), backend.run(crops)
    prob_error = float(np.mean(np.abs(quantised["probs"] - reference["probs"])))
    va_error = float(np.mean(np.abs(quantised["va"] - reference["va"])))
    labels, expected = quantised["probs"].argmax(1), reference["probs"].argmax(1)
    agreement = float(np.mean(labels == expected))
    shuffles = np.random.default_rng(0).permuted(np.tile(expected, (50, 1)), axis=1)
    chance = float(np.mean(shuffles == labels))  # agreement of an int8 model unrelated to the fp32 one
    va_corr = min(np.corrcoef(quantised["va"][:, i], reference["va"][:, i])[0, 1] for i in range(2))
    print(f"int8 vs fp32: mean |dp| {prob_error:.4f}, mean |dva| {va_error:.4f}, class agreement {agreement:.3f} "
          f"(chance {chance:.3f}), V/A correlation {va_corr:.3f}")
    assert prob_error <= INT8_MEAN_PROB_TOLERANCE and va_error <= INT8_MEAN_VA_TOLERANCE
    assert agreement >= INT8_MIN_CLASS_AGREEMENT and agreement >= INT8_MIN_AGREEMENT_OVER_CHANCE * chance
    assert va_corr >= INT8_MIN_VA_CORRELATION
    graph_ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= graph_ops
    assert int8.stat().st_size < 0.5 * (run / "model.pt").stat().st_size


def test_regression_model_exports_only_va(work: Path, crops: np.ndarray) -> None:
    run = make_run(work, "regression")
    assert main(["export", str(run)]) == 0
    backend = OnnxBackend(run / "model.onnx")
    out = backend.run(crops[:4])
    assert backend.info.task == "regression" and set(out) == {"va"}
    assert np.max(np.abs(out["va"] - TorchBackend(run).run(crops[:4])["va"])) <= FP32_TOLERANCE


def test_export_and_load_errors_are_one_line(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(run), "--format", "tflite"]) == 2
    assert capsys.readouterr().err.strip() == "affectlab: error: unknown export format 'tflite'; available: onnx"
    assert main(["export", str(run), "--int8", "--quantization", "fp8"]) == 2
    assert "unknown quantization 'fp8'; available: static, dynamic" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "model file not found" in capsys.readouterr().err
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"this is not protobuf")
    with pytest.raises(AffectlabError, match="not a loadable ONNX model"):
        affectlab.load(foreign)
