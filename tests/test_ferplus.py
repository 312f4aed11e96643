"""FER+ crowd votes: the layout, the majority rules, votes as soft targets, and scoring the held-out split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.data import write_affectnet

from affectlab.cli.main import main
from affectlab.config import DataConfig, SourceConfig, TrainConfig, resolve_config
from affectlab.data.dataset import open_dataset
from affectlab.data.multi_source import SourceInfo
from affectlab.data.readers import detect_layout, read_dataset
from affectlab.data.votes import NOT_A_FACE, TIE, UNKNOWN, class_targets, majority
from affectlab.errors import AffectlabError
from affectlab.evaluation.metrics import vote_metrics
from affectlab.labels import EMOTIONS
from affectlab.training.losses import AffectLoss, class_cross_entropy
from affectlab.training.source_mix import (
    balanced_class_weights,
    class_balanced_weights,
    epoch_draws,
    per_source_class_weights,
    source_draw_weights,
)

#: FER+'s vote columns, in the file's order.
FILE_ORDER = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")


def votes(**counts: int) -> list[int]:
    """Ten counts in FER+'s file order from keyword counts (``happiness=6, neutral=4``)."""
    return [counts.get(name, 0) for name in FILE_ORDER]


def write_ferplus(root: Path, rows: list[tuple[str, list[int]]], size: int = 24, seed: int = 0) -> Path:
    """A FER+ folder: grey PNGs and a headerless label.csv of (name, box, 10 counts)."""
    import cv2

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, counts in rows:
        cv2.imwrite(str(root / name), rng.integers(0, 255, (size, size), dtype=np.uint8))
        lines.append(f'{name},"(0, 0, {size}, {size})",' + ",".join(map(str, counts)))
    (root / "label.csv").write_text("\n".join(lines) + "\n")
    return root


def voted_rows(n: int, seed: int = 0, prefix: str = "fer") -> list[tuple[str, list[int]]]:
    """``n`` faces with clear majorities over all eight emotions, every fifth one a tie between two emotions."""
    rows = []
    for i in range(n):
        top, second = FILE_ORDER[(i + seed) % 8], FILE_ORDER[(i + seed + 3) % 8]
        counts = votes(**{top: 5, second: 5}) if i % 5 == 4 else votes(**{top: 6, second: 3, "unknown": 1})
        rows.append((f"{prefix}{i:07d}.png", counts))
    return rows


# --------------------------------------------------------------------------------------------------------------
# The layout
# --------------------------------------------------------------------------------------------------------------


def test_the_layout_is_detected_by_its_vote_rows_and_keeps_each_faces_votes(tmp_path: Path) -> None:
    root = write_ferplus(
        tmp_path / "fp",
        [
            ("a.png", votes(surprise=7, fear=3)),
            ("b.png", votes(happiness=5, neutral=5)),
            ("c.png", votes(unknown=6, anger=4)),
            ("d.png", votes(NF=10)),
            ("e.png", votes(unknown=4, contempt=4, sadness=2)),
        ],
    )
    assert detect_layout(root) == detect_layout(root / "label.csv") == "ferplus"
    result = read_dataset(root)
    by_id = {s.id: s for s in result.samples}
    assert set(by_id) == {"a.png", "b.png"}
    assert by_id["a.png"].expression == EMOTIONS.index("Surprise")
    surprise, fear = EMOTIONS.index("Surprise"), EMOTIONS.index("Fear")
    assert by_id["a.png"].votes is not None
    assert by_id["a.png"].votes[surprise] == 7 and by_id["a.png"].votes[fear] == 3 and len(by_id["a.png"].votes) == 10
    assert by_id["b.png"].expression is None  # a tie: no majority label, votes kept
    assert result.excluded == {
        "with top vote unknown": 1,
        "with top vote not-a-face (NF)": 1,
        "with top vote tied with unknown or NF": 1,
    }
    assert not result.problems
    # An AffectNet CSV (a header, named columns) stays the csv layout.
    (tmp_path / "an.csv").write_text("subDirectory_filePath,expression,valence,arousal\nx.jpg,1,0.1,0.2\n")
    assert detect_layout(tmp_path / "an.csv") == "csv"


def test_majority_rules() -> None:
    def m(**counts: int) -> int:
        raw = votes(**counts)
        order = (0, 1, 3, 2, 6, 5, 4, 7, 8, 9)  # file column -> affectlab index
        mine = [0] * 10
        for column, index in enumerate(order):
            mine[index] = raw[column]
        return majority(tuple(mine))

    assert m(happiness=6, neutral=4) == EMOTIONS.index("Happy")
    assert m(anger=3, disgust=3, fear=2) == TIE
    assert m(unknown=5, sadness=4) == UNKNOWN
    assert m(unknown=4, sadness=4) == UNKNOWN  # a tie with unknown names no emotion
    assert m(NF=10) == NOT_A_FACE
    assert m(contempt=2, NF=2, unknown=2) == NOT_A_FACE


def test_each_bad_row_is_one_line_naming_the_file_and_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_ferplus(tmp_path / "fp", [(f"f{i}.png", votes(neutral=10)) for i in range(8)])
    label = root / "label.csv"
    good = label.read_text().splitlines()
    bad = [
        'f0.png,"(0, 0, 24, 24)",1,2,3',  # short
        'missing.png,"(0, 0, 24, 24)",' + ",".join(["1"] * 10),  # no such image
        'f2.png,"(0, 0, 24, 24)",1,x,0,0,0,0,0,0,0,0',  # not an integer
        'f3.png,"(0, 0, 24, 24)",5,-1,0,0,0,0,0,0,0,0',  # negative
        'f4.png,"(0, 0, 24, 24)",0,0,0,0,0,0,0,0,0,0',  # no votes
        "f5.png,(0 0 24),5,0,0,0,0,0,0,0,0,0",  # malformed box
        good[6],
        good[6],  # listed twice
    ]
    label.write_text("\n".join([*bad, good[7]]) + "\n")
    result = read_dataset(root)
    lines = [str(p) for p in result.problems if p.fatal]
    assert len(lines) == 7, lines
    for line_no, words in enumerate(
        ["short row", "not found", "integers", "negative", "no votes", "box", "listed twice"], start=1
    ):
        if words != "listed twice":
            assert any(line.startswith(f"{label}:{line_no}: ") and words in line for line in lines), (words, lines)
    assert any(line.startswith(f"{label}:8: ") and "listed twice" in line for line in lines)
    assert [s.id for s in result.samples] == ["f6.png", "f7.png"]
    with pytest.raises(AffectlabError, match=r"label\.csv:1: short row.*7 bad sample"):
        read_dataset(root, on_bad_sample="error")
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "ferplus layout" in out and "problems: 7 error(s)" in out
    assert out.count(f"error: {label}:") == 7


def test_data_check_reports_majority_counts_ties_unknown_and_nf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        ("a.png", votes(happiness=8, neutral=2)),
        ("b.png", votes(happiness=6, surprise=4)),
        ("c.png", votes(neutral=5, sadness=5)),
        ("d.png", votes(unknown=5, neutral=5)),
        ("e.png", votes(unknown=7, fear=3)),
        ("f.png", votes(NF=9, anger=1)),
        ("g.png", votes(contempt=4, disgust=3, anger=3)),
    ]
    root = write_ferplus(tmp_path / "fp", rows)
    (root / "c.png").write_bytes((root / "a.png").read_bytes())  # a copy of a Happy face that is a tie: no conflict
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "byte-identical groups: 1" in out and "conflicting" not in out
    assert "crowd votes: 7 faces with votes" in out
    assert "majority label: Happy 2, Contempt 1" in out
    assert "tied top votes: 2 (1 between emotions" in out and "1 with unknown or NF: dropped" in out
    assert "top vote unknown: 1, not a face (NF): 1 (dropped: they never train a class)" in out


def test_the_official_three_folder_tree_keeps_its_own_split(tmp_path: Path) -> None:
    for folder, n in (("FER2013Train", 16), ("FER2013Valid", 8), ("FER2013Test", 8)):
        write_ferplus(tmp_path / "tree" / folder, voted_rows(n, seed=n, prefix=folder[7:]))
    root = tmp_path / "tree"
    assert detect_layout(root) == "ferplus"
    data = open_dataset(DataConfig(path=str(root)), 32)
    assert {s: len(part) for s, part in data.splits.items()} == {"train": 16, "val": 8, "test": 8}
    assert all(i.startswith("FER2013Test/") for i in data.splits["test"].ids)
    assert data.assignment["given"].startswith("FER+ folders")


# --------------------------------------------------------------------------------------------------------------
# Votes as targets
# --------------------------------------------------------------------------------------------------------------


def test_votes_and_majority_targets(tmp_path: Path) -> None:
    root = write_ferplus(tmp_path / "fp", voted_rows(40))
    votes_data = open_dataset(DataConfig(path=str(root), targets="votes", split_seed=0), 32)
    majority_data = open_dataset(DataConfig(path=str(root), targets="majority", split_seed=0), 32)
    train = votes_data.splits["train"]
    target = class_targets(train)
    np.testing.assert_allclose(target.sum(1), 1.0, rtol=1e-6)
    face = int(np.flatnonzero(train.expression >= 0)[0])
    emotion_votes = train.votes[face, :8]
    np.testing.assert_allclose(target[face], emotion_votes / emotion_votes.sum())  # unknown vote dropped
    assert (train.expression == -1).any(), "ties train on their votes"
    # majority: one-hot labels, ties left out of training, the held-out split the same faces
    m_train = majority_data.splits["train"]
    assert (m_train.expression >= 0).all() and len(m_train) < len(train)
    np.testing.assert_array_equal(class_targets(m_train), np.eye(8, dtype=np.float32)[m_train.expression])
    assert votes_data.splits["test"].ids == majority_data.splits["test"].ids


def test_soft_target_loss_is_the_hand_computed_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 8, dtype=torch.float64)
    q = torch.rand(5, 8, dtype=torch.float64)
    q[:, 7] = 0.0
    q = q / q.sum(1, keepdim=True)
    hand = -(q * torch.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(class_cross_entropy(logits, q), hand)
    w = torch.rand(8, dtype=torch.float64) + 0.5
    weighted = -(w * q * torch.log_softmax(logits, 1)).sum() / (w * q).sum()
    torch.testing.assert_close(class_cross_entropy(logits, q, weights=w), weighted)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_a_one_hot_target_reproduces_the_hard_label_loss(smoothing: float) -> None:
    torch.manual_seed(1)
    logits, labels = torch.randn(32, 8), torch.randint(0, 8, (32,))
    weight = torch.rand(8) + 0.5
    expected = F.cross_entropy(logits, labels, weight=weight, label_smoothing=smoothing)
    one_hot = F.one_hot(labels, 8).float()
    torch.testing.assert_close(
        class_cross_entropy(logits, one_hot, weights=weight, label_smoothing=smoothing), expected
    )
    # Through AffectLoss: hard labels with their one-hot targets take PyTorch's index path, bit for bit as before.
    loss = AffectLoss(TrainConfig(label_smoothing=smoothing), weight)
    hard = loss({"expression": logits}, labels, torch.zeros(32, 2))
    assert torch.equal(loss({"expression": logits}, labels, torch.zeros(32, 2), None, one_hot), hard)
    assert torch.equal(hard, expected)
    # A batch with one soft row takes the probability path; its hard rows count as before.
    soft = one_hot.clone()
    soft[0] = torch.full((8,), 1 / 8)
    mixed = loss({"expression": logits}, labels, torch.zeros(32, 2), None, soft)
    by_hand = class_cross_entropy(logits, soft, weights=weight, label_smoothing=smoothing)
    torch.testing.assert_close(mixed, by_hand)


def test_class_weights_and_sampler_count_vote_mass() -> None:
    target = np.array([[0.6, 0.4, 0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0, 0, 0, 0]])
    soft = np.array([True, True, True])
    weights = balanced_class_weights(np.array([0, 1, -1]), target, soft).numpy()
    mass = target.sum(0)  # Neutral 1.1, Happy 1.9
    np.testing.assert_allclose(weights[:2], 3.0 / (2 * mass[:2]), rtol=1e-6)
    assert (weights[2:] == 1).all()
    draw = class_balanced_weights(np.array([0, 1, -1]), target)
    np.testing.assert_allclose(draw, target @ np.r_[1 / mass[:2], np.zeros(6)])
    # The draws move each class's expected vote mass towards equal (exactly equal only for one-hot targets: a face
    # that carries two classes cannot be drawn for one of them alone).
    drawn = (draw[:, None] * target).sum(0)[:2]
    assert abs(drawn[0] - drawn[1]) / drawn.sum() < abs(mass[0] - mass[1]) / mass[:2].sum()
    # Hard labels: exactly the weights and draws of before.
    hard = np.array([0, 0, 1, 2])
    np.testing.assert_array_equal(class_balanced_weights(hard), 1.0 / np.bincount(hard)[hard])


def test_a_source_can_train_without_class_weights() -> None:
    """FER+ (imbalanced, scored by plain majority accuracy) beside AffectNet (balanced weights): one row each."""
    expression = np.array([0, 1, 1, 1, 0, 0, 0, 7])
    source = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    both = per_source_class_weights(expression, source, 2).numpy()
    assert both[1, 7] == pytest.approx(4 / (2 * 1)) and both[1, 0] == pytest.approx(4 / (2 * 3))
    mixed = per_source_class_weights(expression, source, 2, balanced=[True, False]).numpy()
    np.testing.assert_array_equal(mixed[0], both[0])
    np.testing.assert_array_equal(mixed[1], np.ones(8, dtype=np.float32))
    cfg = resolve_config(
        overrides={"data.sources": [{"path": "a"}, {"path": "b", "per_epoch": 10, "class_weights": "none"}]}
    )
    assert [s.class_weights for s in cfg.data.sources] == [None, "none"]
    with pytest.raises(AffectlabError, match="class_weights='even'"):
        resolve_config(overrides={"data.sources": [{"path": "a"}, {"path": "b", "class_weights": "even"}]})


def test_per_epoch_fixes_a_sources_draws_and_the_epoch_size() -> None:
    source = np.array([0] * 20 + [1] * 200)
    expression = np.zeros(220, dtype=np.int64)
    plain = [SourceInfo("an", "a"), SourceInfo("fp", "b")]
    assert epoch_draws(plain, source) is None  # today's behaviour: one epoch = the training split's size
    fixed = [SourceInfo("an", "a"), SourceInfo("fp", "b", per_epoch=30)]
    assert epoch_draws(fixed, source) == 50
    p = source_draw_weights(fixed, source, expression, class_balanced=False)
    assert p[:20].sum() == pytest.approx(20 / 50) and p[20:].sum() == pytest.approx(30 / 50)
    with pytest.raises(AffectlabError, match="per_epoch and weight"):
        resolve_config(
            overrides={"data.sources": [{"path": "a", "weight": 2.0}, {"path": "b", "per_epoch": 10}]},
        )
    with pytest.raises(AffectlabError, match="per_epoch=0"):
        resolve_config(overrides={"data.sources": [{"path": "a"}, {"path": "b", "per_epoch": 0}]})


def test_vote_metrics_by_hand() -> None:
    counts = np.zeros((3, 10))
    counts[0, [0, 1]] = [6, 4]
    counts[1, [2, 3, 8]] = [5, 5, 2]  # a tie; unknown dropped
    counts[2, 9] = 10  # no emotion vote: left out
    probs = np.full((3, 8), 0.02)
    probs[0, 0], probs[1, 3] = 0.86, 0.86
    got = vote_metrics(counts, probs)
    ce = (-(0.6 * np.log(0.86) + 0.4 * np.log(0.02)) - (0.5 * np.log(0.02) + 0.5 * np.log(0.86))) / 2
    assert got["n"] == 2 and got["top_vote_agreement"] == 1.0
    assert got["vote_cross_entropy"] == pytest.approx(ce)


# --------------------------------------------------------------------------------------------------------------
# End to end: FER+ votes beside an AffectNet-layout source
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_on_votes_with_another_source_scores_majority_accuracy_and_vote_scores(tmp_path: Path) -> None:
    import affectlab

    rng = np.random.default_rng(0)
    an = write_affectnet(tmp_path / "an", [(str(i), i % 8, *np.round(rng.uniform(-1, 1, 2), 3)) for i in range(32)])
    fp = tmp_path / "fp"  # the official three-folder tree: its test folder holds a tie (face 4)
    for folder, n in (("FER2013Train", 32), ("FER2013Valid", 8), ("FER2013Test", 8)):
        write_ferplus(fp / folder, voted_rows(n, seed=n, prefix=folder[7:]))
    out = tmp_path / "run"
    run = affectlab.train(
        out=out,
        progress=False,
        backbone="mobilenet_v2",
        weights="none",
        task="multitask",
        epochs=1,
        input_size=32,
        batch_size=16,
        sets=[
            f"data.sources=[{{path: {an}}}, {{path: {fp}, per_epoch: 24}}]",
            "train.robustness=false",
            "train.faces_in_scenes=false",
            "train.fit_crop=false",
            "train.calibrate=false",
        ],
    )
    assert run is not None
    metrics = json.loads((out / "metrics.json").read_text())
    fer = metrics["sources"]["fp"]
    assert "valence" not in fer, "FER+ has no V/A: nothing to score, nothing trained"
    test = open_dataset(DataConfig(sources=[SourceConfig(str(an)), SourceConfig(str(fp))]), 32).splits["test"]
    in_fp = test.source == 1
    assert fer["n"] == int(in_fp.sum()) and fer["votes"]["n"] == fer["n"]
    assert fer["votes"]["n_majority"] == int((test.expression[in_fp] >= 0).sum()) < fer["n"]
    assert fer["classification"]["accuracy"] is not None and fer["votes"]["vote_cross_entropy"] > 0
    assert 0.0 <= fer["votes"]["top_vote_agreement"] <= 1.0
    assert "votes" not in metrics["sources"]["an"]
    saved = json.loads((out / "run.json").read_text())["data"]["sources"]["fp"]
    assert saved["targets"] == "votes" and saved["per_epoch"] == 24


def test_the_cross_dataset_table_adds_the_vote_scores_of_a_voted_source() -> None:
    from affectlab.reports.cross_dataset import cross_dataset_table

    def run(seed: int) -> dict:
        an = {"classification": {"accuracy": 0.5}, "in_domain": True}
        fp = {
            "classification": {"accuracy": 0.8},
            "votes": {"vote_cross_entropy": 0.9 + seed / 10, "top_vote_agreement": 0.8},
            "in_domain": True,
        }
        metrics = {"sources": {"an": an, "fp": fp}}
        return {
            "backbone": "b",
            "task": "classification",
            "weights": "w",
            "trained_on": ["an", "fp"],
            "metrics": metrics,
        }

    table = cross_dataset_table([run(0), run(1)])
    assert table is not None
    header, rows, _ = table
    assert header[-1] == "fp vote CE / top-vote agreement" and "an vote CE / top-vote agreement" not in header
    assert rows[0][-1] == "0.950 / 0.800"
