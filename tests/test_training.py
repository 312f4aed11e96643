from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from support.data import write_affectnet

from affectlab.config import AugmentConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from affectlab.data import prepared
from affectlab.data.dataset import open_dataset
from affectlab.data.face_tensors import FaceDataset, FaceToTensor
from affectlab.data.transforms import Preprocess
from affectlab.experiment import run_experiment
from affectlab.labels import EMOTIONS
from affectlab.models.checkpoint import load_checkpoint
from affectlab.models.outputs import predict_images
from affectlab.training import fit
from affectlab.training.datamodule import uses_feature_cache
from affectlab.training.device_inputs import DeviceInputs
from affectlab.training.features import FeatureCache
from affectlab.training.fit import TrainResult, train_model
from affectlab.training.module import AffectLitModule


def _config(data: Path, **train: object) -> RunConfig:
    return RunConfig(
        DataConfig(path=str(data)),
        ModelConfig(backbone="mobilenet_v2", weights="none", task="multitask", freeze=True, input_size=48),
        TrainConfig(**{"epochs": 3, "batch_size": 16, "robustness": False, "faces_in_scenes": False, **train}),  # type: ignore[arg-type]
    )


@pytest.mark.slow
def test_cached_and_uncached_training_give_the_same_model(demo_data: Path, tmp_path: Path) -> None:
    cached_cfg = _config(demo_data, cache_features=True)
    uncached_cfg = replace(cached_cfg, train=replace(cached_cfg.train, cache_features=False))
    assert uses_feature_cache(cached_cfg) and not uses_feature_cache(uncached_cfg)
    data = open_dataset(cached_cfg.data, 48)
    cache = FeatureCache(tmp_path / "cache")
    a = train_model(cached_cfg, data, tmp_path / "a", cache, progress=False)
    b = train_model(uncached_cfg, data, tmp_path / "b", progress=False)
    assert a.used_feature_cache and not b.used_feature_cache
    assert list(cache.root.glob("*.pt")), "features were not written to the cache"
    images = data.splits["test"].images
    pa, pb = (predict_images(r.model, images, r.preprocess) for r in (a, b))
    np.testing.assert_allclose(pa["probs"], pb["probs"], atol=1e-4)
    np.testing.assert_allclose(pa["va"], pb["va"], atol=1e-4)
    assert (pa["probs"].argmax(1) == pb["probs"].argmax(1)).all()
    np.testing.assert_allclose([r["val_loss"] for r in a.history], [r["val_loss"] for r in b.history], rtol=1e-4)


@pytest.fixture(scope="module")
def plain_and_ema(
    demo_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[RunConfig, TrainResult, Path]]:
    """Two trainings that differ only in the EMA of weights (frozen trunk, so they share cached features)."""
    runs = {}
    for name, ema_decay in (("plain", None), ("ema", 0.95)):
        cfg = _config(demo_data, epochs=4, lr=3e-3, ema_decay=ema_decay)
        run_dir = tmp_path_factory.mktemp(name) / "run"
        runs[name] = cfg, train_model(cfg, open_dataset(cfg.data, 48), run_dir, progress=False), run_dir
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["plain", "ema"])
def test_best_weights_are_restored_and_saved(
    plain_and_ema: dict[str, tuple[RunConfig, TrainResult, Path]], name: str
) -> None:
    # With an EMA, the weights validated (and so selected) are the averaged ones; those must be the ones restored.
    cfg, result, run_dir = plain_and_ema[name]
    losses = [row["val_loss"] for row in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1
    assert {"config.yaml", "history.csv", "model.pt"} <= {p.name for p in run_dir.iterdir()}
    assert not (run_dir / "checkpoints").exists()
    # Recompute the validation loss of the returned model: it must be the best epoch's, not the last one's.
    data = open_dataset(cfg.data, 48)
    lit = AffectLitModule(result.model, cfg.train)
    val = FaceDataset(data.splits["val"], FaceToTensor(result.preprocess))
    inputs, expression, va = (torch.stack([val[i][k] for i in range(len(val))]) for k in range(3))
    with torch.no_grad():
        loss = lit.loss(result.model.eval()(inputs), expression, va).item()
    assert loss == pytest.approx(min(losses), rel=2e-3)


@pytest.mark.slow
def test_ema_changes_what_is_validated_not_how_it_trains(
    plain_and_ema: dict[str, tuple[RunConfig, TrainResult, Path]],
) -> None:
    plain, ema = (plain_and_ema[name][1].history for name in ("plain", "ema"))
    # The raw weights follow the same path (same seed, same batches); validation sees the averaged weights.
    assert [row["train_loss"] for row in ema] == pytest.approx([row["train_loss"] for row in plain], rel=1e-5)
    val_plain, val_ema = ([row["val_loss"] for row in h] for h in (plain, ema))
    assert all(abs(a - b) > 1e-4 for a, b in zip(val_plain, val_ema, strict=True)), (val_plain, val_ema)


def _imbalanced(root: Path) -> Path:
    """15 Neutral faces and 3 of every other class (random pixels, random V/A): 2 to 3 per class after the split."""
    rng = np.random.default_rng(0)
    classes = [0] * 15 + [c for c in range(1, 8) for _ in range(3)]
    rows = [(str(i), c, *np.round(rng.uniform(-1, 1, 2), 3)) for i, c in enumerate(classes)]
    return write_affectnet(root, rows, size=32)


@pytest.mark.slow
def test_all_levers_train_together_and_each_takes_effect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[tuple[int, bool]] = []  # (train index, augmented) for every training image the loader served

    class RecordingDataset(FaceDataset):  # the in-RAM training split's faces
        def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            item = super().__getitem__(index)
            plain = torch.from_numpy(np.ascontiguousarray(self.images[index])).permute(2, 0, 1)[None]
            fetched.append((index, not torch.equal(item[0], self.to_tensor.preprocess.normalise(plain)[0])))
            return item

    monkeypatch.setattr(prepared, "FaceDataset", RecordingDataset)
    cfg = _config(
        _imbalanced(tmp_path / "data"),
        epochs=3,
        lr=2e-3,
        optimizer="adamw",
        scheduler="cosine",
        warmup_epochs=0.5,
        augment=True,
        label_smoothing=0.1,
        va_loss="mse+ccc",
        sampler="balanced",
        patience=10,
        ema_decay=0.9,
        tta_flip=True,
    )
    cfg = replace(cfg, model=replace(cfg.model, backbone="resnet18", freeze=False, input_size=32))
    data = open_dataset(cfg.data, 32)
    run = run_experiment(cfg, data, tmp_path / "run", progress=False, eval_split="val")
    assert run is not None and not run.used_feature_cache and run.epochs_run == 3
    with (tmp_path / "run" / "history.csv").open() as handle:
        history = [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(handle)]
    assert all(np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"]) for row in history)
    lrs = [row["lr"] for row in history]
    assert lrs[-1] < 0.2 * max(lrs), f"cosine schedule did not decay: {lrs}"

    train = data.splits["train"]
    # augment: the training images were transformed (flip, affine, jitter, erasing), not served as stored
    assert len(fetched) == 3 * len(train)
    assert sum(changed for _, changed in fetched) > 0.8 * len(fetched)
    # sampler: class-balanced draws; Neutral is over a third of the training images but about an eighth of the draws
    neutral_share = np.mean(train.expression == 0)
    drawn_share = np.mean([train.expression[i] == 0 for i, _ in fetched])
    assert neutral_share > 0.3 and drawn_share < 0.2, (neutral_share, drawn_share)
    # TTA: the scored predictions are the flip-averaged ones of the saved model
    assert run.metrics.tta_flip is True
    model, meta = load_checkpoint(tmp_path / "run")
    preprocess = meta.preprocess
    val = data.splits["val"]
    flipped = predict_images(model, val.images, preprocess, tta_flip=True, calibration=meta.calibration)["probs"]
    with (tmp_path / "run" / "predictions.csv").open() as handle:
        written = np.array([[float(row[f"p_{n}"]) for n in EMOTIONS] for row in csv.DictReader(handle)])
    np.testing.assert_allclose(written, flipped, atol=1e-5)
    # the mirror changes the raw outputs (a fitted temperature may flatten a weak model's probabilities)
    raw_flipped, raw_single = (
        predict_images(model, val.images, preprocess, tta_flip=t)["probs"] for t in (True, False)
    )
    assert np.abs(raw_flipped - raw_single).max() > 1e-3
    # EMA: see test_ema_changes_what_is_validated_not_how_it_trains


@pytest.mark.slow
def test_gradual_unfreezing_changes_the_trunk_only_after_the_given_epoch(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trunk_at_epoch_start: list[dict[str, torch.Tensor]] = []
    head_at_epoch_start: list[torch.Tensor] = []

    class RecordingUnfreeze(fit.UnfreezeTrunk):
        def on_train_epoch_start(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
            trunk_at_epoch_start.append({k: v.clone() for k, v in pl_module.model.trunk.state_dict().items()})
            head_at_epoch_start.append(pl_module.model.expression_head[0].weight.detach().clone())
            super().on_train_epoch_start(trainer, pl_module)

    monkeypatch.setattr(fit, "UnfreezeTrunk", RecordingUnfreeze)
    cfg = _config(demo_data, epochs=2, unfreeze_at_epoch=1, backbone_lr=1e-4, patience=10)
    cfg = replace(cfg, model=replace(cfg.model, backbone="resnet18"))
    result = train_model(cfg, open_dataset(cfg.data, 48), tmp_path / "run", progress=False)
    assert not result.used_feature_cache and result.epochs_run == 2 and len(trunk_at_epoch_start) == 2
    before, after_first = trunk_at_epoch_start
    assert before.keys() == after_first.keys()
    # Epoch 1 trained the head only: trunk weights and BatchNorm statistics untouched, head moved.
    assert all(torch.equal(before[k], after_first[k]) for k in before)
    assert not torch.equal(head_at_epoch_start[0], head_at_epoch_start[1])
    # Epoch 2 trained the trunk too.
    final = result.model.trunk.state_dict()
    assert not torch.equal(final["0.weight"], after_first["0.weight"])


@pytest.mark.slow
def test_early_stopping_stops_after_patience_epochs_without_improvement(demo_data: Path, tmp_path: Path) -> None:
    # A learning rate far too high for the head: validation loss gets worse after the first epochs.
    cfg = _config(demo_data, epochs=30, lr=0.05, patience=2)
    cfg = replace(cfg, model=replace(cfg.model, backbone="resnet18"))
    result = train_model(cfg, open_dataset(cfg.data, 48), tmp_path / "run", progress=False)
    losses = [row["val_loss"] for row in result.history]
    assert result.epochs_run < 30, losses
    assert result.best_epoch == int(np.argmin(losses)) + 1
    assert result.epochs_run == result.best_epoch + 2  # stopped after `patience` epochs without a better loss
    assert all(loss >= min(losses) for loss in losses[result.best_epoch :])


@pytest.mark.slow
def test_selection_follows_the_monitored_validation_metric(demo_data: Path, tmp_path: Path) -> None:
    cfg = _config(demo_data, epochs=4, lr=3e-3, monitor="val_score", patience=10)
    result = train_model(cfg, open_dataset(cfg.data, 48), tmp_path / "run", progress=False)
    scores = [row["val_score"] for row in result.history]
    assert all(s is not None for s in scores)
    assert result.best_epoch == int(np.argmax(scores)) + 1
    row = result.history[0]
    assert row["val_score"] == pytest.approx(row["val_accuracy"] + row["val_ccc"], abs=1e-5)


@pytest.mark.slow
def test_mixed_precision_training_computes_losses_and_metrics_in_fp32(demo_data: Path, tmp_path: Path) -> None:
    # bf16 autocast runs on CPU too, so the GPU path (precision: auto) is exercised here: under autocast the heads
    # return bf16, and the epoch-end loss with fp32 class weights once failed with a dtype error.
    cfg = _config(demo_data, epochs=2, precision="bf16-mixed", va_loss="mse+ccc", monitor="val_score")
    result = train_model(cfg, open_dataset(cfg.data, 48), tmp_path / "run", progress=False)
    assert result.epochs_run == 2
    for row in result.history:
        assert all(np.isfinite(row[k]) for k in ("train_loss", "val_loss", "val_score", "val_ccc"))


def test_device_inputs_augment_each_sample_and_normalise_like_the_loader() -> None:
    preprocess = Preprocess(input_size=32)
    rng = np.random.default_rng(0)
    batch = torch.from_numpy(rng.integers(0, 256, (1, 3, 32, 32), dtype=np.uint8)).repeat(8, 1, 1, 1)
    plain = preprocess.normalise(batch)
    # validation (and augment off): exactly the loader's normalisation, nothing else
    torch.testing.assert_close(DeviceInputs(preprocess, AugmentConfig())(batch, training=False), plain)
    torch.testing.assert_close(DeviceInputs(preprocess, None)(batch, training=True), plain)
    torch.manual_seed(0)
    out = DeviceInputs(preprocess, AugmentConfig())(batch, training=True)
    assert out.shape == plain.shape and out.dtype == torch.float32
    # the same image eight times gives eight different crops: the random parameters are drawn per sample
    flat = out.flatten(1)
    assert all(not torch.allclose(flat[i], flat[j]) for i in range(8) for j in range(i + 1, 8))
    assert (out - plain).abs().mean() > 0.1


@pytest.mark.slow
def test_augmentation_on_the_device_trains_on_uint8_batches(demo_data: Path, tmp_path: Path) -> None:
    cfg = _config(demo_data, epochs=1, augment=True, augment_on="device")
    cfg = replace(cfg, model=replace(cfg.model, backbone="resnet18", freeze=False, input_size=32))
    seen: list[torch.Tensor] = []

    class Inputs(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, i: int) -> None:
            seen.append(batch[0])

    data = open_dataset(cfg.data, 32)
    result = train_model(cfg, data, tmp_path / "run", progress=False, callbacks=[Inputs()])
    assert seen and all(b.dtype == torch.float32 and b.shape[1:] == (3, 32, 32) for b in seen)  # after the transfer
    assert np.isfinite(result.history[0]["train_loss"]) and np.isfinite(result.history[0]["val_loss"])
    # the saved model is used as any other: fed normalised images by evaluation and inference
    probs = predict_images(result.model, data.splits["val"].images, result.preprocess)["probs"]
    assert probs.shape == (len(data.splits["val"]), 8) and np.allclose(probs.sum(1), 1, atol=1e-5)
