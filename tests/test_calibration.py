"""Honest confidence: ModelMeta across file versions, temperature scaling, conformal sets and intervals, and the
same calibrated outputs from PyTorch and from the exported ONNX graph."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from support.models import INPUT_SIZE, make_run, one_torch_thread

from affectlab.config import ModelConfig
from affectlab.data.transforms import Preprocess
from affectlab.errors import AffectlabError
from affectlab.evaluation.calibration import conformal_quantile, fit_calibration, fit_temperature
from affectlab.evaluation.trust import (
    confidence_metrics,
    confidence_section,
    ece_floor,
    expected_calibration_error,
    interval_metrics,
    selective_metrics,
    set_metrics,
)
from affectlab.export.onnx import FP32_TOLERANCE, export_loaded, export_onnx
from affectlab.models.affect_model import AffectModel
from affectlab.models.checkpoint import checkpoint_meta, load_checkpoint, save_calibration
from affectlab.models.meta import META_VERSION, Calibration, ModelMeta
from affectlab.models.outputs import aps_scores, head_outputs
from affectlab.runtime.backends import ONNX_METADATA_KEY, OnnxBackend, TorchBackend

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

CALIBRATION = Calibration(temperature=1.7, coverage=0.9, set_threshold=0.8, va_halfwidth=(0.3, 0.2), n=100)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (24, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = make_run(tmp_path_factory.mktemp("calibrated"))
    save_calibration(run / "model.pt", CALIBRATION)
    return run


def _synthetic(n: int, seed: int, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / temperature): a model overconfident by that factor."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, 8)) + rng.normal(0, 1.0, (1, 8))
    scaled = np.exp(logits / temperature - (logits / temperature).max(1, keepdims=True))
    probs = scaled / scaled.sum(1, keepdims=True)
    labels = np.array([rng.choice(8, p=p) for p in probs])
    return logits, labels


# ---------------------------------------------------------------------------------------------------------------
# ModelMeta: one module, a version number, and files written before it still load
# ---------------------------------------------------------------------------------------------------------------


def _old_checkpoint(run: Path, out: Path) -> Path:
    """``model.pt`` as affectlab wrote it before ModelMeta: no meta_version, no tta_flip key, no calibration."""
    bundle = torch.load(run / "model.pt", weights_only=True)
    old = {
        "format": "affectlab-checkpoint-v1",
        "model": bundle["model"],
        "task": bundle["task"],
        "class_names": bundle["class_names"],
        "va_range": bundle["va_range"],
        "preprocess": bundle["preprocess"],
        "meta": {"note": "old", "config": {"train": {"tta_flip": True}}, "best_epoch": 3, "history": []},
        "state_dict": bundle["state_dict"],
    }
    out.mkdir(parents=True, exist_ok=True)
    torch.save(old, out / "model.pt")
    return out


def test_old_checkpoint_without_version_loads_and_predicts_exactly_as_before(tmp_path: Path, crops: np.ndarray) -> None:
    old = _old_checkpoint(make_run(tmp_path), tmp_path / "old")
    model, meta = load_checkpoint(old)
    assert meta.version == 1 and meta.calibration is None and meta.extra == {"note": "old"}
    assert meta.tta_flip is True and meta.best_epoch == 3  # read from the training config, as before
    newer = {**torch.load(old / "model.pt", weights_only=True), "meta_version": META_VERSION + 1}
    torch.save(newer, tmp_path / "newer.pt")
    with pytest.raises(AffectlabError, match=r"newer.pt: model metadata version \d+ is newer than this affectlab"):
        load_checkpoint(tmp_path / "newer.pt")
    backend = TorchBackend(old)
    got = backend.run(crops)
    assert set(got) == {"probs", "va"}  # no sets or intervals without a calibration
    with torch.no_grad():  # the pre-calibration definition: softmax of the flip-averaged logits
        images = torch.from_numpy(meta.preprocess.normalise_numpy(crops))
        out, mirrored = model(images), model(images.flip(-1))
        probs = torch.softmax((out["expression"] + mirrored["expression"]) / 2, dim=1).numpy()
    np.testing.assert_allclose(got["probs"], probs, atol=1e-6)
    np.testing.assert_allclose(got["va"], ((out["va"] + mirrored["va"]) / 2).numpy(), atol=1e-6)


def test_old_onnx_file_without_version_loads_without_calibration(
    tmp_path: Path, calibrated_run: Path, crops: np.ndarray
) -> None:
    path = export_onnx(make_run(tmp_path), tmp_path / "new.onnx")
    proto = onnx.load(str(path))
    bundle = json.loads({p.key: p.value for p in proto.metadata_props}[ONNX_METADATA_KEY])
    assert bundle["meta_version"] == META_VERSION
    old = {k: v for k, v in bundle.items() if k not in ("meta_version", "confidence_calibration")}
    for entry in proto.metadata_props:
        if entry.key == ONNX_METADATA_KEY:
            entry.value = json.dumps(old)
    onnx.save(proto, str(tmp_path / "old.onnx"))
    backend = OnnxBackend(tmp_path / "old.onnx")
    assert backend.info.calibration is None and backend.info.task == "multitask"
    np.testing.assert_allclose(
        backend.run(crops)["probs"], TorchBackend(tmp_path / "run-multitask").run(crops)["probs"], atol=1e-4
    )
    for entry in proto.metadata_props:
        if entry.key == ONNX_METADATA_KEY:
            entry.value = json.dumps({**bundle, "meta_version": META_VERSION + 1})
    onnx.save(proto, str(tmp_path / "newer.onnx"))
    with pytest.raises(AffectlabError, match=r"newer.onnx: model metadata version \d+ is newer than this affectlab"):
        OnnxBackend(tmp_path / "newer.onnx")


def test_model_meta_round_trips_through_checkpoint_and_onnx_bundles(calibrated_run: Path) -> None:
    _, meta = load_checkpoint(calibrated_run)
    assert meta.version == META_VERSION and meta.calibration == CALIBRATION
    assert ModelMeta.from_checkpoint(meta.to_checkpoint()) == meta
    back = ModelMeta.from_onnx(json.loads(json.dumps(meta.to_onnx())))
    assert back.calibration == CALIBRATION and back.preprocess == meta.preprocess and back.model == meta.model


# ---------------------------------------------------------------------------------------------------------------
# Temperature scaling
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("true_temperature", [0.6, 2.5])
def test_fitted_temperature_recovers_a_known_miscalibration(true_temperature: float) -> None:
    logits, labels = _synthetic(20000, seed=1, temperature=true_temperature)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.05)
    before = confidence_metrics(labels, torch.softmax(torch.from_numpy(logits), 1).numpy())
    after = torch.softmax(torch.from_numpy(logits / fit_temperature(logits, labels)), 1).numpy()
    assert confidence_metrics(labels, after)["ece"] < min(0.02, before["ece"])


def test_temperature_never_changes_the_most_probable_class() -> None:
    logits = torch.from_numpy(np.random.default_rng(2).normal(0, 3, (5000, 8))).float()
    plain = head_outputs({"expression": logits})["probs"].argmax(1)
    for temperature in (0.05, 0.5, 1.0, 3.0, 20.0):
        probs = head_outputs({"expression": logits}, Calibration(temperature=temperature))["probs"]
        assert torch.equal(probs.argmax(1), plain)


def test_no_calibration_gives_exactly_the_plain_softmax() -> None:
    logits = torch.randn(64, 8) * 4
    out = head_outputs({"expression": logits, "va": torch.rand(64, 2)}, None)
    assert set(out) == {"probs", "va"} and torch.equal(out["probs"], torch.softmax(logits, dim=1))


# ---------------------------------------------------------------------------------------------------------------
# Split conformal prediction
# ---------------------------------------------------------------------------------------------------------------


def test_conformal_coverage_holds_on_a_large_exchangeable_sample() -> None:
    """Calibrate on 10,000 faces, test on 50,000 from the same distribution: the coverage of the sets and the
    intervals is within 4 binomial standard errors of 0.9 (calibration and test draws both counted)."""
    n_cal, n_test, target = 10000, 50000, 0.9
    logits, labels = _synthetic(n_cal + n_test, seed=5, temperature=2.0)
    rng = np.random.default_rng(6)
    va_pred = rng.uniform(-0.7, 0.7, (n_cal + n_test, 2))
    va_true = np.clip(va_pred + rng.normal(0, [0.15, 0.25], va_pred.shape), -1, 1)
    raw = {"expression": torch.from_numpy(logits).float(), "va": torch.from_numpy(va_pred).float()}
    cal_raw = {k: v[:n_cal] for k, v in raw.items()}
    calibration = fit_calibration(cal_raw, labels[:n_cal], va_true[:n_cal], target)
    assert calibration.temperature == pytest.approx(2.0, rel=0.1) and calibration.n == n_cal
    out = {k: v.numpy() for k, v in head_outputs({k: v[n_cal:] for k, v in raw.items()}, calibration).items()}
    error = 4 * np.sqrt(target * (1 - target) * (1 / n_cal + 1 / n_test))
    sets = set_metrics(labels[n_cal:], out["set"])
    assert abs(sets["coverage"] - target) < error, sets
    assert 1 < sets["mean_size"] < 8  # adaptive: neither the top class only nor every class
    assert len(np.unique(out["set"].sum(1))) > 3  # set size varies with the face's certainty
    for name, values in interval_metrics(va_true[n_cal:], out["va_interval"]).items():
        assert abs(values["coverage"] - target) < error, (name, values)
    # the test can fail: a threshold fitted for 0.8 does not cover 0.9
    loose = fit_calibration(cal_raw, labels[:n_cal], va_true[:n_cal], 0.8)
    loose_sets = head_outputs({"expression": raw["expression"][n_cal:]}, loose)["set"].numpy()
    assert set_metrics(labels[n_cal:], loose_sets)["coverage"] < target - error


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    scores = np.arange(1, 10, dtype=float)  # n = 9: rank ceil(10 * 0.9) = 9
    assert conformal_quantile(scores, 0.9) == 9.0 and conformal_quantile(scores, 0.5) == 5.0
    assert conformal_quantile(scores[:5], 0.9) == 2.0  # too few for 90%: unbounded (every class, whole range)


# ---------------------------------------------------------------------------------------------------------------
# The exported graph
# ---------------------------------------------------------------------------------------------------------------


def _small_calibrated_model(crops: np.ndarray) -> tuple[AffectModel, ModelMeta]:
    """A model with a one-convolution trunk, so that ONNX Runtime and PyTorch agree to float rounding on the
    logits and what is compared is the calibration inside the graph; its heads are scaled and centred on
    ``crops`` so that probabilities, set sizes and V/A vary from crop to crop."""
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 5, stride=4), torch.nn.ReLU())
    model = AffectModel(trunk, 16, "multitask", hidden=32, dropout=0.0).eval()
    preprocess = Preprocess(input_size=crops.shape[1])
    with torch.no_grad():
        features = model.forward_features(torch.from_numpy(preprocess.normalise_numpy(crops)))
        for head, gain in ((model.expression_head, 100.0), (model.va_head, 30.0)):
            assert head is not None
            head[-1].weight.mul_(gain)
            head[-1].bias.sub_(head(features).mean(0))
    config = ModelConfig(backbone="mobilenet_v2", weights="none", task="multitask", input_size=preprocess.input_size)
    return model, checkpoint_meta(config, preprocess, calibration=CALIBRATION)


def test_onnx_graph_gives_the_calibrated_probabilities_sets_and_intervals_of_pytorch(tmp_path: Path) -> None:
    crops = np.random.default_rng(4).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    model, meta = _small_calibrated_model(crops)
    onnx_backend = OnnxBackend(export_loaded(model, meta, tmp_path / "small.onnx"))
    assert onnx_backend.info.calibration == CALIBRATION
    got, expected = onnx_backend.run(crops), TorchBackend.from_model(model, meta).run(crops)
    assert set(got) == set(expected) == {"probs", "set", "va", "va_interval"}
    for key in ("probs", "va", "va_interval"):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got["set"], expected["set"])
    sizes = got["set"].sum(1)
    assert sizes.min() >= 1 and len(np.unique(sizes)) > 2  # non-trivial sets of varying size
    assert got["set"][np.arange(len(crops)), got["probs"].argmax(1)].all()  # each holds the top class
    plain = OnnxBackend(export_loaded(model, replace(meta, calibration=None), tmp_path / "plain.onnx")).run(crops)
    assert set(plain) == {"probs", "va"}
    assert np.abs(plain["probs"] - got["probs"]).max() > 1e-2  # the temperature is applied inside the graph
    np.testing.assert_array_equal(plain["probs"].argmax(1), got["probs"].argmax(1))


def test_a_calibrated_run_exports_its_calibration(calibrated_run: Path, tmp_path: Path, crops: np.ndarray) -> None:
    """A trained-size trunk (MobileNetV2) agrees to the export's own fp32 bound; sets agree wherever a score is
    not within that bound of the threshold."""
    onnx_backend, torch_backend = (
        OnnxBackend(export_onnx(calibrated_run, tmp_path / "m.onnx")),
        TorchBackend(calibrated_run),
    )
    got, expected = onnx_backend.run(crops), torch_backend.run(crops)
    np.testing.assert_allclose(got["probs"], expected["probs"], atol=FP32_TOLERANCE)
    np.testing.assert_allclose(got["va_interval"], expected["va_interval"], atol=FP32_TOLERANCE)
    scores = aps_scores(torch.from_numpy(expected["probs"])).numpy()
    clear = np.abs(scores - CALIBRATION.set_threshold) > 10 * FP32_TOLERANCE
    np.testing.assert_array_equal(got["set"][clear], expected["set"][clear])


# ---------------------------------------------------------------------------------------------------------------
# Metrics of trust
# ---------------------------------------------------------------------------------------------------------------


def test_selective_accuracy_and_risk_coverage_area_by_hand() -> None:
    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    correct = np.array([1, 1, 1, 1, 0, 1, 0, 0, 1, 0], dtype=bool)
    result = selective_metrics(confidence[::-1], correct[::-1])  # the order of the input does not matter
    assert result["accuracy_at_50"] == pytest.approx(4 / 5) and result["accuracy_at_80"] == pytest.approx(5 / 8)
    assert result["accuracy_at_100"] == pytest.approx(0.6)
    risks = [0, 0, 0, 0, 1 / 5, 1 / 6, 2 / 7, 3 / 8, 3 / 9, 4 / 10]
    assert result["aurc"] == pytest.approx(np.mean(risks))


def test_calibration_metrics_of_a_perfect_and_a_confidently_wrong_model() -> None:
    labels = np.arange(8).repeat(10)
    perfect = np.eye(8)[labels]
    metrics = confidence_metrics(labels, perfect)
    assert metrics["nll"] == pytest.approx(0, abs=1e-9) and metrics["brier"] == 0 and metrics["ece"] == 0
    wrong = np.eye(8)[(labels + 1) % 8] * 0.92 + 0.01  # 0.93 on the next class, 0.01 on each other
    metrics = confidence_metrics(labels, wrong)
    assert metrics["ece"] == pytest.approx(0.93) and metrics["accuracy_at_100"] == 0
    assert metrics["brier"] == pytest.approx(0.93**2 + 0.99**2 + 6 * 0.01**2)
    assert metrics["nll"] == pytest.approx(-np.log(0.01))
    assert metrics["classwise_ece"] > 0


def test_ece_floor_is_what_a_perfectly_calibrated_model_measures() -> None:
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(8, 0.7), size=600)
    floor = ece_floor(probs)
    cumulative = probs.cumsum(axis=1)
    measured = [expected_calibration_error((rng.random((600, 1)) > cumulative).sum(axis=1), probs) for _ in range(40)]
    assert floor > 0.02  # 600 faces: far from zero although the probabilities are exact
    assert np.mean(measured) == pytest.approx(floor, rel=0.15)
    assert ece_floor(np.tile(probs, (20, 1))) < floor / 3  # the bias shrinks with the number of faces
    assert ece_floor(probs) == floor  # seeded: a report gives the same floor again


def test_confidence_section_of_an_uncalibrated_model_has_no_after() -> None:
    logits, labels = _synthetic(400, seed=8, temperature=1.0)
    outputs = {k: v.numpy() for k, v in head_outputs({"expression": torch.from_numpy(logits).float()}).items()}
    section = confidence_section(outputs, outputs, labels, None, None)
    assert section["temperature"] is None and section["after"] is None and section["sets"] is None
    assert section["before"]["accuracy_at_100"] == pytest.approx(float(np.mean(logits.argmax(1) == labels)))
