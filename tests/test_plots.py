"""Tests for affectlab.reports.plots: what each figure shows (the data its artists draw), and valid PNG files.

Each plotting function builds a Figure and hands it to ``plots._save``; the ``drawn`` fixture keeps those figures
(the real save still runs), so a test can read the image, line, scatter and text data off the artists. Pixel
hashes would break on any font or matplotlib change; the artist data says what a reader sees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.image import imread

from affectlab.labels import EMOTIONS
from affectlab.reports import plots
from affectlab.reports.plots import (
    plot_circumplex,
    plot_confusion_matrix,
    plot_qualitative_grid,
    plot_training_curves,
    select_qualitative,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the plotting functions save, in order."""
    figures: list[Figure] = []
    real_save = plots._save

    def keep(fig: Figure, out_path: Path) -> Path:
        figures.append(fig)
        return real_save(fig, out_path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


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
    # val_loss = 1.6/e + 0.1e: 1.70, 1.00, 0.83, 0.80, 0.82, 0.87, lowest at epoch 4 (neither first nor last)
    return [
        {
            "epoch": e,
            "train_loss": 1.5 / e,
            "val_loss": 1.6 / e + 0.1 * e,
            "val_accuracy": 0.3 + 0.05 * e,
            "val_rmse_valence": 0.5 - 0.02 * e,
            "val_rmse_arousal": 0.45 - 0.01 * e,
        }
        for e in range(1, n + 1)
    ]


def _lines(ax) -> dict[str, tuple[list[float], list[float]]]:  # type: ignore[no-untyped-def]
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def _assert_line(line: tuple[list[float], list[float]], xs: list[float], ys: list[float]) -> None:
    assert line[0] == xs
    assert line[1] == pytest.approx(ys)


def _texts(ax) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.get_text() for t in ax.texts]


def test_training_curves_full(tmp_path: Path, drawn: list[Figure]) -> None:
    out = plot_training_curves(_history(), tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    _assert_png(out)
    ax_loss, ax_metric, ax_rmse = drawn[0].axes  # accuracy and RMSE: RMSE gets a twin axis
    epochs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    loss = _lines(ax_loss)
    _assert_line(loss["train loss"], epochs, [1.5 / e for e in epochs])
    _assert_line(loss["validation loss"], epochs, [1.6 / e + 0.1 * e for e in epochs])
    assert loss["restored: best val_loss (epoch 4)"][0] == [4.0, 4.0]  # the lowest validation loss, not the last epoch
    metric = _lines(ax_metric)
    _assert_line(metric["accuracy"], epochs, [0.3 + 0.05 * e for e in epochs])
    assert metric["restored: best val_loss (epoch 4)"][0] == [4.0, 4.0]
    rmse = _lines(ax_rmse)
    _assert_line(rmse["RMSE valence"], epochs, [0.5 - 0.02 * e for e in epochs])
    _assert_line(rmse["RMSE arousal"], epochs, [0.45 - 0.01 * e for e in epochs])
    assert ax_metric.get_legend() is not None and ax_loss.get_legend() is not None


@pytest.mark.parametrize(
    ("drop", "metric_lines"),
    [
        ({"val_rmse_valence", "val_rmse_arousal"}, {"accuracy"}),  # classification
        ({"val_accuracy"}, {"RMSE valence", "RMSE arousal"}),  # regression: RMSE on the metric axis itself
        ({"epoch", "val_accuracy", "val_rmse_valence", "val_rmse_arousal"}, set()),  # losses only, no epoch numbers
    ],
    ids=["classification", "regression", "losses-only"],
)
def test_training_curves_missing_keys(
    tmp_path: Path, drawn: list[Figure], drop: set[str], metric_lines: set[str]
) -> None:
    hist = [{k: v for k, v in row.items() if k not in drop} for row in _history()]
    hist[2]["val_loss"] = None  # a None value is skipped
    hist[4]["val_loss"] = float("nan")  # and so is a non-finite one
    _assert_png(plot_training_curves(hist, tmp_path / "c.png"))
    assert len(drawn[0].axes) == 2  # no twin axis without both accuracy and RMSE
    ax_loss, ax_metric = drawn[0].axes
    xs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] if "epoch" not in drop else [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # row index
    val_x, val_y = _lines(ax_loss)["validation loss"]
    assert val_x == [xs[0], xs[1], xs[3], xs[5]]
    assert val_y == pytest.approx([1.7, 1.0, 0.8, 1.6 / 6 + 0.6])
    assert _lines(ax_loss)["train loss"][0] == xs
    metric = {label for label in _lines(ax_metric) if not label.startswith("restored")}
    assert metric == metric_lines
    if not metric_lines:
        assert _texts(ax_metric) == ["no validation metrics recorded"]


@pytest.mark.parametrize(
    ("monitor", "best_epoch", "marked"),
    [
        ("val_score", 6, 6),  # the restored epoch, as the training reports it, whatever the loss did
        ("val_accuracy", None, 6),  # from the history: the highest accuracy, not the lowest loss (epoch 4)
        ("val_loss", None, 4),
    ],
)
def test_training_curves_mark_the_restored_epoch(
    tmp_path: Path, drawn: list[Figure], monitor: str, best_epoch: int | None, marked: int
) -> None:
    plot_training_curves(_history(), tmp_path / "c.png", monitor, best_epoch)
    for ax in drawn[0].axes[:2]:
        lines = _lines(ax)
        assert lines[f"restored: best {monitor} (epoch {marked})"][0] == [marked, marked]
        assert not [label for label in lines if label.startswith("restored") and f"epoch {marked})" not in label]


def test_training_curves_nothing_recorded(tmp_path: Path, drawn: list[Figure]) -> None:
    _assert_png(plot_training_curves([{"epoch": 1}], tmp_path / "empty.png"))
    ax_loss, ax_metric = drawn[0].axes
    assert not ax_loss.get_lines() and not ax_metric.get_lines()
    assert _texts(ax_loss) == ["no loss recorded"] and _texts(ax_metric) == ["no validation metrics recorded"]


def test_confusion_matrix_shows_rows_as_true_classes(tmp_path: Path, drawn: list[Figure]) -> None:
    # Not symmetric, so a transposed matrix shows; class 2 has no true samples.
    counts = [[6, 3, 1], [0, 4, 0], [0, 2, 0]]
    counts[2] = [0, 0, 0]
    out = plot_confusion_matrix(counts, ["a", "b", "c"], tmp_path / "sub" / "cm.png", title="val")
    _assert_png(out, 400, 400)
    ax = drawn[0].axes[0]
    shown = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shown, [[0.6, 0.3, 0.1], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # row-normalised recall
    cells = {(round(t.get_position()[1]), t.get_position()[0], t.get_fontsize() > 7): t.get_text() for t in ax.texts}
    assert cells[(0, 1, True)] == "30%" and cells[(0, 1, False)] == "3"  # true a, predicted b
    assert cells[(1, 0, True)] == "0%" and cells[(1, 1, True)] == "100%" and cells[(1, 1, False)] == "4"
    assert [cells[(2, j, True)] for j in range(3)] == ["–"] * 3  # no true samples: no percentages
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a (10)", "b (4)", "c (0)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_ylabel() == "true class (support)" and ax.get_xlabel() == "predicted class"
    assert ax.get_title() == "val"
    assert drawn[0].get_supxlabel() == "N = 14, accuracy = 71.4%"
    with pytest.raises(ValueError):
        plot_confusion_matrix([[1, 2], [3, 4]], EMOTIONS, tmp_path / "bad.png")


def test_confusion_matrix_eight_classes_is_readable(tmp_path: Path, drawn: list[Figure]) -> None:
    rng = np.random.default_rng(0)
    conf = rng.integers(0, 50, (8, 8)) + np.diag(rng.integers(50, 200, 8))
    _assert_png(plot_confusion_matrix(conf.tolist(), EMOTIONS, tmp_path / "cm8.png"), 500, 500)
    ax = drawn[0].axes[0]
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), conf / conf.sum(1, keepdims=True))
    assert ax.get_title() == "Confusion matrix (row-normalised)"


def test_circumplex(tmp_path: Path, drawn: list[Figure]) -> None:
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, (500, 2))
    p = np.clip(0.7 * t + rng.normal(0, 0.2, (500, 2)), -1, 1)
    _assert_png(plot_circumplex(t, p, tmp_path / "va.png", title="val"), 900, 300)
    ax_v, ax_a, ax_c = drawn[0].axes
    for ax, col, name in ((ax_v, 0, "Valence"), (ax_a, 1, "Arousal")):
        np.testing.assert_array_equal(ax.collections[0].get_offsets(), np.column_stack([t[:, col], p[:, col]]))
        assert ax.get_title() == f"{name} (RMSE {np.sqrt(np.mean((t[:, col] - p[:, col]) ** 2)):.3f})"
        assert ax.get_xlabel() == f"true {name.lower()}" and ax.get_ylabel() == f"predicted {name.lower()}"
    links, true_pts, pred_pts = ax_c.collections
    true_xy, pred_xy = np.asarray(true_pts.get_offsets()), np.asarray(pred_pts.get_offsets())
    assert len(true_xy) == len(pred_xy) == 400  # max_points of 500
    shown = [int(np.flatnonzero((t == row).all(1))[0]) for row in true_xy]
    np.testing.assert_array_equal(pred_xy, p[shown])  # each predicted point belongs to the true point shown with it
    segments = links.get_segments()
    assert len(segments) == 100
    for seg in segments:  # every link joins a sample's true point to its own prediction
        k = int(np.flatnonzero((t == seg[0]).all(1))[0])
        assert k in shown
        np.testing.assert_array_equal(seg[1], p[k])
    assert ax_c.get_title() == "Circumplex (400 of 500 shown, 100 pairs linked)"
    assert drawn[0].get_suptitle() == "val"


def test_circumplex_few_points(tmp_path: Path, drawn: list[Figure]) -> None:
    t = np.array([[0.5, 0.2], [-0.4, 0.1], [0.0, -0.9]])
    p = np.array([[0.4, 0.0], [-0.1, 0.3], [0.2, -0.5]])
    _assert_png(plot_circumplex(t, p, tmp_path / "va_small.png"), 900, 300)
    ax_c = drawn[0].axes[2]
    links, true_pts, pred_pts = ax_c.collections
    np.testing.assert_array_equal(true_pts.get_offsets(), t)
    np.testing.assert_array_equal(pred_pts.get_offsets(), p)
    np.testing.assert_array_equal(np.stack(links.get_segments()), np.stack([t, p], axis=1))
    assert ax_c.get_title() == "Circumplex (3 pairs linked)"
    assert drawn[0].get_suptitle() == "Valence / arousal (N = 3)"


def _grid_inputs(n: int) -> tuple[list[np.ndarray], list[str], list[bool | None]]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]
    titles = [f"T: Happy  P: Sad\nV .52/.31  A .10/.{i:02d}" for i in range(n)]
    correct: list[bool | None] = [[True, False, None][i % 3] for i in range(n)]
    return images, titles, correct


FRAME = {True: plots._CORRECT_COLOUR, False: plots._WRONG_COLOUR, None: plots._UNKNOWN_COLOUR}


def _assert_grid_shows(fig: Figure, images: list[np.ndarray], titles: list[str], correct: list[bool | None]) -> None:
    axes = fig.axes
    for i, (image, title, flag) in enumerate(zip(images, titles, correct, strict=True)):
        ax = axes[i]
        np.testing.assert_array_equal(ax.images[0].get_array(), image)  # the i-th face, in order
        assert ax.get_xlabel() == title
        assert {to_hex(s.get_edgecolor()) for s in ax.spines.values()} == {FRAME[flag]}
        assert to_hex(ax.xaxis.label.get_color()) == FRAME[flag]
    assert not any(ax.axison for ax in axes[len(images) :])  # empty cells are blank


def test_qualitative_grid_full(tmp_path: Path, drawn: list[Figure]) -> None:
    images, titles, correct = _grid_inputs(40)
    _assert_png(plot_qualitative_grid(images, titles, correct, tmp_path / "grid.png", title="examples"), 800, 600)
    assert len(drawn[0].axes) == 40  # 5 rows of 8
    _assert_grid_shows(drawn[0], images, titles, correct)
    assert drawn[0].get_suptitle() == "examples"


def test_qualitative_grid_few_images(tmp_path: Path, drawn: list[Figure]) -> None:
    images, titles, correct = _grid_inputs(3)
    images[1] = images[1][:, :, 0]  # a grayscale face
    _assert_png(plot_qualitative_grid(images, titles, correct, tmp_path / "grid3.png", ncols=2), 150, 150)
    assert len(drawn[0].axes) == 4  # 2 x 2, the last cell empty
    _assert_grid_shows(drawn[0], images, titles, correct)
    assert drawn[0].axes[1].images[0].get_cmap().name == "gray"


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
