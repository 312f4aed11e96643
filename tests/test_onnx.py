"""ONNX export: metadata, dynamic batch, agreement with PyTorch (fp32 to 1e-4; int8 within a stated tolerance)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from support.models import INPUT_SIZE, demo_faces, make_run, one_torch_thread

import affectlab
from affectlab.cli import main
from affectlab.errors import AffectlabError
from affectlab.export.int8 import MIN_INT8_AGREEMENT, calibration_images, int8_kernel, run_data_available
from affectlab.labels import EMOTIONS
from affectlab.runtime.backends import OnnxBackend, TorchBackend

#: fp32: the issue's bound on |ONNX Runtime - PyTorch| for probabilities and valence/arousal.
FP32_TOLERANCE = 1e-4
#: int8 (static, per-channel QDQ, 7-bit weights) against fp32 on a model trained on the demo faces, measured on
#: the 96 demo faces: stated tolerances for top-class agreement, mean |difference| of probabilities and of V/A.
#: Measured: agreement .969, mean |dp| .0061, mean |dva| .0221, the same to the last digit on an AVX-512 VNNI CPU
#: and under an emulated AVX2-only CPU (qemu-x86_64 -cpu EPYC-Rome). With 8-bit weights the two CPUs differ
#: (.979 and .958): the saturation shows, though on this small model not below the tolerance, which is why
#: test_int8_weights_fit_in_7_bits checks the cause itself, on every CPU.
INT8_MIN_CLASS_AGREEMENT = 0.90
TRAINED_SIZE = 32
INT8_MEAN_PROB_TOLERANCE = 0.03
INT8_MEAN_VA_TOLERANCE = 0.05

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
def trained(demo_data: Path, work: Path) -> Path:
    """A ResNet18 trained for 8 epochs on the 96 demo faces at 32 px (seeded): confident, varied fp32 predictions.

    A network with random weights quantises badly (its decisions hang on tiny feature differences, so int8
    rounding flips them: 42% agreement for a random MobileNetV2 trunk with a trained head), and an agreement test
    on it measures noise. A trained model is what users quantise.
    """
    from affectlab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from affectlab.data.dataset import open_dataset
    from affectlab.data.split import save_split
    from affectlab.training.fit import train_model

    cfg = RunConfig(
        DataConfig(path=str(demo_data)),
        ModelConfig(backbone="resnet18", weights="none", task="multitask", freeze=False, input_size=TRAINED_SIZE),
        TrainConfig(epochs=8, batch_size=16, lr=1e-3, patience=8, monitor="val_score", seed=0),
    )
    out = work / "trained"
    data = open_dataset(cfg.data, TRAINED_SIZE)
    train_model(cfg, data, out, progress=False)
    save_split(data.assignment, out / "split.json")  # as affectlab train saves it: the run says how it split
    return out


@pytest.fixture(scope="module")
def demo_crops(demo_data: Path) -> np.ndarray:
    """The 96 demo faces at the trained model's input size (uint8 NHWC RGB)."""
    files = sorted((demo_data / "images").glob("*.png"), key=lambda p: int(p.stem))
    return np.stack(
        [
            cv2.resize(
                cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (TRAINED_SIZE,) * 2, interpolation=cv2.INTER_AREA
            )
            for f in files
        ]
    )


@pytest.fixture(scope="module")
def int8(trained: Path, work: Path) -> Path:
    calibration = work / "calibration"
    calibration.mkdir()
    for i, face in enumerate(demo_faces(work / "calib-src", 3, 96)):
        cv2.imwrite(str(calibration / f"{i}.png"), face)
    assert main(["export", str(trained), "--int8", "--calibration", str(calibration)]) == 0
    return trained / "model-int8.onnx"


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
    from_onnx = affectlab.load(alone, detector="none")
    from_run = affectlab.load(run, detector="none", backend="torch")  # the run's PyTorch weights
    assert from_onnx.info.preprocess == from_run.info.preprocess and from_onnx.info.runtime == "onnxruntime"
    a, b = from_onnx.predict(image)[0], from_run.predict(image)[0]
    assert a.label == b.label and np.max(np.abs(a.probs - b.probs)) <= FP32_TOLERANCE
    assert a.valence == pytest.approx(b.valence, abs=FP32_TOLERANCE)
    restored = pickle.loads(pickle.dumps(from_onnx.backend))  # the session is rebuilt, not pickled
    np.testing.assert_allclose(
        restored.run(np.stack([cv2.resize(image, (64, 64))]))["probs"][0],
        from_onnx.backend.run(np.stack([cv2.resize(image, (64, 64))]))["probs"][0],
        atol=1e-6,
    )


@pytest.mark.slow
def test_int8_agrees_within_the_stated_tolerance(trained: Path, int8: Path, demo_crops: np.ndarray) -> None:
    backend = OnnxBackend(int8)
    kernel = int8_kernel()
    check = backend.info.extra["int8_check"]
    assert backend.info.extra["quantization"] == "int8-static-qdq" and backend.info.extra["weight_bits"] == 7
    assert backend.info.extra["calibration"] == "calibration (24 images)"
    assert check["kernel"] == kernel and check["images"] == 24 and check["class_agreement"] >= MIN_INT8_AGREEMENT
    reference, quantised = TorchBackend(trained).run(demo_crops), backend.run(demo_crops)
    assert len(set(reference["probs"].argmax(1))) >= 6, "the fixture model must tell the classes apart"
    prob_error = float(np.mean(np.abs(quantised["probs"] - reference["probs"])))
    va_error = float(np.mean(np.abs(quantised["va"] - reference["va"])))
    agreement = float(np.mean(quantised["probs"].argmax(1) == reference["probs"].argmax(1)))
    print(
        f"int8 kernel: {kernel}; int8 vs fp32 on {len(demo_crops)} demo faces: class agreement {agreement:.3f}, "
        f"mean |dp| {prob_error:.4f}, mean |dva| {va_error:.4f}"
    )
    assert agreement >= INT8_MIN_CLASS_AGREEMENT
    assert prob_error <= INT8_MEAN_PROB_TOLERANCE and va_error <= INT8_MEAN_VA_TOLERANCE
    graph_ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= graph_ops
    assert int8.stat().st_size < 0.5 * (trained / "model.pt").stat().st_size


@pytest.mark.slow
def test_int8_of_a_run_calibrates_on_its_own_validation_faces(trained: Path, tmp_path: Path) -> None:
    import dataclasses

    from affectlab.config import load_recipe
    from affectlab.data.dataset import open_dataset

    cfg = load_recipe(trained / "config.yaml")
    split = dataclasses.replace(cfg.data, split_file=str(trained / "split.json"))
    val = open_dataset(split, TRAINED_SIZE, splits=("val",)).splits["val"].images
    images, described = calibration_images(trained, TRAINED_SIZE)
    assert described == f"validation faces of run trained ({len(val)} of {len(val)})"
    np.testing.assert_array_equal(images, val)
    out = affectlab.export(trained, int8=True, out=tmp_path / "int8.onnx")  # no --calibration: the run's faces
    assert OnnxBackend(out).info.extra["calibration"] == described
    moved = tmp_path / "moved"  # the same run after its data has gone: synthetic faces, as before
    moved.mkdir()
    (moved / "split.json").write_bytes((trained / "split.json").read_bytes())
    text = (trained / "config.yaml").read_text()
    (moved / "config.yaml").write_text(text.replace(cfg.data.path, str(tmp_path / "gone")))
    assert run_data_available(trained) and not run_data_available(moved)


def test_int8_weights_fit_in_7_bits(int8: Path) -> None:
    """Why int8 is right on every x86 CPU: without VNNI, ONNX Runtime sums pairs of uint8 x int8 products in a
    saturating int16 (vpmaddubsw). 255 x 127 x 2 overflows it; with weights in [-64, 64] (255 x 64 x 2 = 32640) no pair can."""
    from onnx import numpy_helper

    model = onnx.load(str(int8))
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 20, "every convolution's weights are quantised"
    assert min(int(w.min()) for w in weights) >= -64 and max(int(w.max()) for w in weights) <= 64


def test_int8_export_is_refused_when_it_disagrees_with_fp32(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from affectlab.export import int8 as quantize

    monkeypatch.setattr(quantize, "MIN_INT8_AGREEMENT", 1.01)  # no model can pass: the refusal path must hold
    out = tmp_path / "refused.onnx"
    assert main(["export", str(trained), "--int8", "--out", str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("affectlab: error: int8 export refused on this CPU (") and "\n" not in message
    assert "at least 101% needed" in message and not out.exists() and not list(tmp_path.iterdir())


def test_regression_model_exports_only_va(work: Path, crops: np.ndarray) -> None:
    run = make_run(work, "regression")
    assert main(["export", str(run)]) == 0
    backend = OnnxBackend(run / "model.onnx")
    out = backend.run(crops[:4])
    assert backend.info.task == "regression" and set(out) == {"va"}
    assert np.max(np.abs(out["va"] - TorchBackend(run).run(crops[:4])["va"])) <= FP32_TOLERANCE


def test_export_and_load_errors_are_one_line(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(run), "--format", "apk"]) == 2
    assert capsys.readouterr().err.strip() == (
        "affectlab: error: unknown export format 'apk'; available: onnx, tflite, executorch, coreml"
    )
    assert main(["export", str(run), "--int8", "--quantization", "fp8"]) == 2
    assert "unknown quantization 'fp8'; available: static, dynamic" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "model file not found" in capsys.readouterr().err
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"this is not protobuf")
    with pytest.raises(AffectlabError, match="not a loadable ONNX model"):
        affectlab.load(foreign)
