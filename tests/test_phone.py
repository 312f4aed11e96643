"""Phone exports (LiteRT, ExecuTorch, Core ML): metadata, uint8 input, agreement with PyTorch (fp32 to 1e-4).

The converters are optional extras and not in the ``test`` extra (their installs are large, see docs/phone.md):
each format's tests skip, saying which extra runs them, when its converter is absent. The tests of what happens
without an extra, and of the checks made before any converter runs, run everywhere.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.models import INPUT_SIZE, demo_faces, one_torch_thread

import affectlab
from affectlab.cli import main
from affectlab.export.phone import PHONE_EXTRAS, phone_runner, read_phone_metadata
from affectlab.labels import EMOTIONS
from affectlab.runtime.backends import TorchBackend

#: fp32: the issue's bound on |phone runtime - PyTorch| for probabilities and valence/arousal.
FP32_TOLERANCE = 1e-4

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def _needs(fmt: str) -> None:
    _module, package, extra = PHONE_EXTRAS[fmt]
    pytest.importorskip(package, reason=f"--format {fmt} needs pip install 'affectlab[{extra}]'")


@pytest.fixture(scope="module")
def crops(work: Path) -> np.ndarray:
    """Face crops (uint8 NHWC RGB at the model's input size): 8 demo faces and 4 seeded noise images."""
    faces = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), (INPUT_SIZE, INPUT_SIZE)) for f in demo_faces(work, 1)]
    noise = np.random.default_rng(0).integers(0, 256, (4, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    return np.concatenate([np.stack(faces), noise])


def _rows(fmt: str, path: Path, crops: np.ndarray) -> dict[str, np.ndarray]:
    runner = phone_runner(fmt, path)
    rows = [runner(crop[None]) for crop in crops]
    return {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}


@pytest.mark.parametrize("fmt", ["tflite", "executorch"])
def test_phone_file_matches_pytorch_to_1e4(fmt: str, run: Path, crops: np.ndarray, tmp_path: Path) -> None:
    _needs(fmt)
    out = tmp_path / f"model.{fmt}"
    assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    meta = read_phone_metadata(fmt, out)
    assert meta["class_names"] == list(EMOTIONS) and meta["task"] == "multitask"
    assert meta["preprocess"]["input_size"] == INPUT_SIZE and meta["preprocess"]["mean"] == pytest.approx(
        [0.485, 0.456, 0.406]
    )
    assert meta["affectlab_version"] == affectlab.__version__ and meta["quantization"] == "none"
    assert meta["outputs"] == ["expression_probs", "va"] and meta["input_layout"].startswith("NHWC uint8 RGB")
    reference, got = TorchBackend(run).run(crops), _rows(fmt, out, crops)
    for key, name in (("probs", "expression_probs"), ("va", "va")):
        assert got[name].shape == reference[key].shape
        assert np.max(np.abs(got[name] - reference[key])) <= FP32_TOLERANCE
    # The comparison means something only if the outputs really depend on the input.
    assert reference["probs"].std(0).max() > 0.05 and len(set(reference["probs"].argmax(1))) >= 3


@pytest.mark.parametrize("fmt", ["tflite", "executorch"])
def test_face_trunk_with_head_norm_and_flip_tta_matches_pytorch(fmt: str, tmp_path: Path) -> None:
    """The best recipe's shape: face_resnet29, a BatchNorm1d on the pooled features, the flip TTA running the model
    twice (ExecuTorch's XNNPACK lowering refused that BatchNorm1d until the export made it a multiply-add)."""
    import torch

    from affectlab.config import ModelConfig
    from affectlab.data.transforms import Preprocess
    from affectlab.models.affect_model import create_model
    from affectlab.models.checkpoint import save_checkpoint

    _needs(fmt)
    size = 112
    config = ModelConfig(
        backbone="face_resnet29", weights="face", task="multitask", input_size=size, head_norm=True, freeze=False
    )
    torch.manual_seed(0)
    model = create_model(config).eval()
    assert model.head_norm is not None
    with torch.no_grad():  # statistics away from the defaults, so the norm really shifts and scales
        model.head_norm.running_mean.uniform_(0.5, 1.5)
        model.head_norm.running_var.uniform_(0.01, 0.05)
        model.head_norm.weight.uniform_(0.5, 2.0)
        model.head_norm.bias.uniform_(-0.5, 0.5)
    run = save_checkpoint(
        tmp_path / "face" / "model.pt", model, config, Preprocess(input_size=size), config={"train": {"tta_flip": True}}
    ).parent
    faces = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), (size, size)) for f in demo_faces(tmp_path, 1)])
    out = tmp_path / f"face.{fmt}"
    assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    assert read_phone_metadata(fmt, out)["tta_flip"] is True
    reference, got = TorchBackend(run).run(faces), _rows(fmt, out, faces)
    for key, name in (("probs", "expression_probs"), ("va", "va")):
        assert np.max(np.abs(got[name] - reference[key])) <= FP32_TOLERANCE
    assert reference["probs"].std(0).max() > 0.01


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "executorch"])
def test_bundled_model_exports_with_flip_tta_and_calibration(fmt: str, tmp_path: Path) -> None:
    """affectlab-base: 160 px, flip TTA, temperature, prediction sets and V/A intervals, all inside the file."""
    _needs(fmt)
    from affectlab.models.registry import resolve_model

    out = tmp_path / f"base.{fmt}"
    assert main(["export", "affectlab-base", "--format", fmt, "--out", str(out)]) == 0
    meta = read_phone_metadata(fmt, out)
    assert meta["tta_flip"] is True and meta["confidence_calibration"]["set_threshold"] == pytest.approx(
        0.9352, abs=1e-4
    )
    assert meta["outputs"] == ["expression_probs", "prediction_set", "va", "va_interval"]
    faces = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in demo_faces(tmp_path, 1, 160)[:4]])
    reference, got = TorchBackend(resolve_model("affectlab-base")).run(faces), _rows(fmt, out, faces)
    for key, name in (("probs", "expression_probs"), ("va", "va"), ("va_interval", "va_interval")):
        assert np.max(np.abs(got[name] - reference[key])) <= FP32_TOLERANCE
    assert got["prediction_set"].shape == (4, 8)


def test_coreml_package_has_its_inputs_outputs_and_metadata(run: Path, tmp_path: Path) -> None:
    _needs("coreml")
    out = tmp_path / "model.mlpackage"
    assert main(["export", str(run), "--format", "coreml", "--out", str(out)]) == 0
    import coremltools as ct

    spec = ct.utils.load_spec(str(out))
    (image,) = spec.description.input
    assert image.name == "image" and image.type.WhichOneof("Type") == "imageType"
    assert (image.type.imageType.width, image.type.imageType.height) == (INPUT_SIZE, INPUT_SIZE)
    assert [o.name for o in spec.description.output] == ["expression_probs", "va"]
    meta = read_phone_metadata("coreml", out)
    assert meta["class_names"] == list(EMOTIONS) and meta["affectlab_version"] == affectlab.__version__
    assert dict(spec.description.metadata.userDefined)["class_names"] == json.dumps(list(EMOTIONS))


#: ExecuTorch 1.5.1 writes the int8 file but its runtime refuses the lowered method (``XNNCompiler::compileModel
#: failed: 0x1``), so the export's own check refuses it (docs/phone.md): a known failure, strict so that a fix shows.
_EXECUTORCH_INT8 = pytest.param(
    "executorch", marks=pytest.mark.xfail(reason="ExecuTorch int8 does not load yet (docs/phone.md)", strict=True)
)


#: LiteRT int8 keeps the face trunk's labels (.970 on 600 held-out faces, docs/phone.md), but on MobileNetV2 (this
#: test model and affectlab-base) its check refuses it: 12-38% agreement on 16 demo faces. Known, strict.
_LITERT_INT8 = pytest.param(
    "tflite",
    marks=pytest.mark.xfail(reason="LiteRT int8 of MobileNetV2 is refused by its check (docs/phone.md)", strict=True),
)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["run", "affectlab-base"])
@pytest.mark.parametrize("fmt", [_LITERT_INT8, _EXECUTORCH_INT8])
def test_int8_export_reports_its_agreement(fmt: str, model: str, run: Path, tmp_path: Path) -> None:
    """A test model, and the bundled one: calibrated, so its graph holds the prediction sets' comparisons (LiteRT's
    quantizer refused their bool mask until it became a float)."""
    _needs(fmt)
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i, face in enumerate(demo_faces(tmp_path / "calib", 2, 96)):
        cv2.imwrite(str(calibration / f"{i}.png"), face)
    out = tmp_path / f"model-int8.{fmt}"
    source = str(run) if model == "run" else model
    assert (
        main(["export", source, "--format", fmt, "--int8", "--calibration", str(calibration), "--out", str(out)]) == 0
    )
    meta = read_phone_metadata(fmt, out)
    check = meta["int8_check"]
    print(f"{model} {fmt} int8 vs PyTorch fp32 on {check['images']} calibration faces: {check}")
    assert check["images"] == 16 and 0.0 <= check["class_agreement"] <= 1.0
    assert ("prediction_set" in meta["outputs"]) == (model == "affectlab-base")


def test_missing_extra_is_one_line(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.import_module

    def without(name: str, *args: object) -> object:
        if name.split(".")[0] == "executorch":
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without)
    assert main(["export", str(run), "--format", "executorch", "--out", str(run.parent / "x.pte")]) == 2
    message = capsys.readouterr().err.strip()
    assert message == (
        "affectlab: error: --format executorch needs the optional package executorch: "
        "pip install 'affectlab[executorch]'"
    )
    assert not (run.parent / "x.pte").exists()


def test_checks_before_converting(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(run), "--format", "coreml", "--int8"]) == 2
    assert "--int8 is not available for --format coreml; available for: onnx, tflite, executorch" in (
        capsys.readouterr().err
    )
    existing = tmp_path / "model.pte"
    existing.write_bytes(b"someone's file")
    assert main(["export", str(run), "--format", "executorch", "--out", str(existing)]) == 2
    assert f"{existing}: exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert existing.read_bytes() == b"someone's file"
    assert main(["export", str(run), "--format", "apk"]) == 2
    assert "available: onnx, tflite, executorch, coreml" in capsys.readouterr().err
