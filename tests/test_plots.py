"""Tests for affectlab.reports.plots: every figure is a valid, readable PNG, and edge cases don't crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from affectlab.labels import EMOTIONS
from affectlab.reports.plots import (
    plot_circumplex,
    plot_confusion_matrix,
    plot_qualitative_grid,
    plot_training_curves,
    select_qualitative,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path, min_w: int = 300, min_h: int = 200) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = imread(path)
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h, (w, h)
    assert w <= 4000 and h <= 4000, (w, h)
    assert img.std() > 0  # not blank
    assert not list(path.parent.glob("*.tmp"))  # atomic write left no temp file


def _history(n: int = 6) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 1.5 / e,
            "val_loss": 1.6 / e + 0.02 * e,
            "val_accuracy": 0.3 + 0.05 * e,
            "val_rmse_valence": 0.5 - 0.02 * e,
            "val_rmse_arousal": 0.45 - 0.01 * e,
        }
        for e in range(1, n + 1)
    ]


def test_training_curves_full(tmp_path: Path) -> None:
    out = plot_training_curves(_history(), tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    _assert_png(out)


@pytest.mark.parametrize(
    "drop",
    [
        {"val_rmse_valence", "val_rmse_arousal"},  # classification
        {"val_accuracy"},  # regression
        {"epoch", "val_accuracy", "val_rmse_valence", "val_rmse_arousal"},  # losses only, no epoch numbers
    ],
)
def test_training_curves_missing_keys(tmp_path: Path, drop: set[str]) -> None:
    hist = [{k: v for k, v in row.items() if k not in drop} for row in _history()]
    hist[2]["val_loss"] = None  # a None value is skipped
    _assert_png(plot_training_curves(hist, tmp_path / "c.png"))


def test_training_curves_nothing_recorded(tmp_path: Path) -> None:
    _assert_png(plot_training_curves([{"epoch": 1}], tmp_path / "empty.png"))


def test_confusion_matrix(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    conf = rng.integers(0, 50, (8, 8)) + np.diag(rng.integers(50, 200, 8))
    conf[7] = 0  # a class with no true samples
    out = plot_confusion_matrix(conf.tolist(), EMOTIONS, tmp_path / "sub" / "cm.png", title="val")
    _assert_png(out, 500, 500)
    with pytest.raises(ValueError):
        plot_confusion_matrix([[1, 2], [3, 4]], EMOTIONS, tmp_path / "bad.png")


def test_circumplex(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, (500, 2))
    p = np.clip(0.7 * t + rng.normal(0, 0.2, (500, 2)), -1, 1)
    _assert_png(plot_circumplex(t, p, tmp_path / "va.png", title="val"), 900, 300)
    _assert_png(plot_circumplex(t[:3], p[:3], tmp_path / "va_small.png"), 900, 300)


def _grid_inputs(n: int) -> tuple[list[np.ndarray], list[str], list[bool | None]]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]
    titles = [f"T: Happy  P: Sad\nV .52/.31  A .10/.{i:02d}" for i in range(n)]
    correct: list[bool | None] = [[True, False, None][i % 3] for i in range(n)]
    return images, titles, correct


def test_qualitative_grid_full(tmp_path: Path) -> None:
    _assert_png(plot_qualitative_grid(*_grid_inputs(40), tmp_path / "grid.png", title="examples"), 800, 600)


def test_qualitative_grid_few_images(tmp_path: Path) -> None:
    _assert_png(plot_qualitative_grid(*_grid_inputs(3), tmp_path / "grid3.png"), 200, 150)


def test_qualitative_grid_length_mismatch(tmp_path: Path) -> None:
    images, titles, correct = _grid_inputs(3)
    with pytest.raises(ValueError):
        plot_qualitative_grid(images, titles[:2], correct, tmp_path / "bad.png")


def test_select_qualitative_balanced_and_deterministic() -> None:
    correct = np.array([True] * 70 + [False] * 30)
    idx = select_qualitative(correct, n=40, seed=0)
    assert len(idx) == 40 and len(set(idx.tolist())) == 40
    assert correct[idx].sum() == 20
    assert np.array_equal(idx, select_qualitative(correct, n=40, seed=0))


def test_select_qualitative_fills_from_other_group() -> None:
    correct = np.array([True] * 50 + [False] * 5)
    idx = select_qualitative(correct, n=40)
    assert len(idx) == 40 and (~correct[idx]).sum() == 5
    idx = select_qualitative(~correct, n=40)  # now only 5 correct
    assert len(idx) == 40 and (~correct)[idx].sum() == 5
    assert len(select_qualitative(correct[:7], n=40)) == 7  # fewer samples than n
    assert len(select_qualitative(np.array([], dtype=bool))) == 0
