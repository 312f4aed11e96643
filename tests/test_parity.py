"""What users get is what evaluation reports: predict (PyTorch and ONNX) applies the run's flip TTA.

A run is trained with ``train.tta_flip=true``; ``affectlab predict --detector none`` on its test images, scored
with the evaluation code, must give the test metrics ``train`` wrote, and the exported ONNX graph must give the
same outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from support.models import INPUT_SIZE, make_run, one_torch_thread

import affectlab
from affectlab.cli import main
from affectlab.config import config_from_dict
from affectlab.data.dataset import open_dataset
from affectlab.evaluation.evaluate import score
from affectlab.models.checkpoint import load_checkpoint, save_checkpoint

FAST = [
    "--weights",
    "none",
    "--no-freeze",
    "--input-size",
    str(INPUT_SIZE),
    "--epochs",
    "1",
    "--quiet",
    "--set",
    "train.robustness=false",
    "--set",
    "train.faces_in_scenes=false",
]

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
pytestmark = pytest.mark.slow  # trains a model (one epoch)


@pytest.fixture(scope="module")
def tta_run(demo_data: Path, work: Path) -> Path:
    """A run trained with flip TTA, whose weights are then swapped for a model with varied outputs (one epoch
    on 96 images predicts the same class for every face, which would make any comparison pass), and evaluated
    again with ``affectlab evaluate``."""
    run = work / "tta-run"
    assert (
        main(
            [
                "train",
                "--data",
                str(demo_data),
                "--out",
                str(run),
                "--backbone",
                "mobilenet_v2",
                "--task",
                "multitask",
                *FAST,
                "--set",
                "train.tta_flip=true",
            ]
        )
        == 0
    )
    varied, _ = load_checkpoint(make_run(work))
    _, meta = load_checkpoint(run)
    assert meta.config is not None
    cfg = config_from_dict(meta.config)
    save_checkpoint(
        run / "model.pt",
        varied,
        cfg.model,
        meta.preprocess,
        config=meta.config,
        best_epoch=meta.best_epoch,
        history=meta.history,
        calibration=meta.calibration,
    )
    assert main(["evaluate", str(run), "--overwrite"]) == 0
    return run


def _outputs(records: list[dict], order: list[str]) -> dict[str, np.ndarray]:  # type: ignore[type-arg]
    by_id = {Path(r["source"]).stem: r for r in records}
    rows = [by_id[i] for i in order]
    outputs = {
        "probs": np.array([list(r["probs"].values()) for r in rows]),
        "va": np.array([[r["valence"], r["arousal"]] for r in rows]),
    }
    if rows[0]["prediction_set"] is not None:  # a calibrated run: its sets and intervals are in the records too
        outputs["set"] = np.array([[name in r["prediction_set"] for name in r["probs"]] for r in rows])
        outputs["va_interval"] = np.array([[r["valence_interval"], r["arousal_interval"]] for r in rows])
    return outputs


def _flatten(metrics: dict, prefix: str = "") -> dict[str, float]:  # type: ignore[type-arg]
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[prefix + key] = float(value)
    return flat


def test_predict_on_the_test_crops_reproduces_the_test_metrics(tta_run: Path, demo_data: Path, tmp_path: Path) -> None:
    reported = json.loads((tta_run / "metrics.json").read_text())
    assert reported["tta_flip"] is True and reported["split"] == "test"
    cfg = config_from_dict(yaml.safe_load((tta_run / "config.yaml").read_text()))
    part = open_dataset(
        cfg.data.__class__(**{**cfg.data.__dict__, "split_file": str(tta_run / "split.json")}),
        cfg.model.input_size,
        splits=("test",),
    ).splits["test"]
    images = [str(demo_data / "images" / f"{i}.png") for i in part.ids]
    out = tmp_path / "test.jsonl"
    # PyTorch, as training scored it: near-uniform demo probabilities put many classes at the set threshold, where
    # ONNX Runtime's last-bit differences (CPU-dependent) flip set membership; test_onnx holds ONNX to PyTorch.
    argv = ["predict", str(tta_run), *images, "--detector", "none", "--backend", "torch", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(part.ids)
    _, meta = load_checkpoint(tta_run)
    assert meta.calibration is not None  # fitted on val by train
    outputs = _outputs(records, part.ids)
    assert {"set", "va_interval"} <= outputs.keys()
    # The records hold the calibrated probabilities only: "before the temperature" cannot be rebuilt from them.
    got = {
        k: v
        for k, v in _flatten(score(outputs, part, cfg.model, "test", True, meta.calibration)).items()
        if not k.startswith("confidence.before.")
    }
    want = _flatten(reported)
    assert got.keys() <= want.keys() and len(got) > 20 and "confidence.sets.coverage" in got
    for key, value in got.items():  # records round to 6 decimals, hence the tolerance
        assert value == pytest.approx(want[key], abs=2e-5), key
    assert got["classification.accuracy"] == want["classification.accuracy"]
    assert 0 < want["classification.accuracy"] < 1 and len(set(np.argmax(_outputs(records, part.ids)["probs"], 1))) > 2

    untta = affectlab.load(tta_run, backend="torch").backend  # PyTorch: the flip is a setting, not in the graph
    untta.info = untta.info.__class__(**{**untta.info.__dict__, "tta_flip": False})
    plain = untta.run(part.images)  # the same model without the mirror pass differs: the test can fail
    assert np.abs(plain["va"] - _outputs(records, part.ids)["va"]).max() > 1e-3


def test_onnx_export_applies_and_records_the_flip_tta(tta_run: Path, demo_data: Path) -> None:
    path = tta_run / "model.onnx"
    assert main(["export", str(tta_run), "--out", str(path)]) == 0
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["tta_flip"] == "true" and json.loads(meta["affectlab"])["tta_flip"] is True
    from_onnx, from_torch = (
        affectlab.load(path, detector="none"),
        affectlab.load(tta_run, detector="none", backend="torch"),
    )
    assert from_onnx.info.tta_flip and from_torch.info.tta_flip
    crops = np.stack(_demo_crops(demo_data, INPUT_SIZE))
    a, b = from_onnx.backend.run(crops), from_torch.backend.run(crops)
    for key in ("probs", "va"):
        np.testing.assert_allclose(a[key], b[key], atol=1e-4)


def _demo_crops(root: Path, size: int) -> list[np.ndarray]:
    from affectlab.data.images import read_rgb, resize_square

    return [resize_square(read_rgb(p), size) for p in sorted((root / "images").glob("*.png"))[:12]]
