"""Confusion and V/A error analysis on hand-made matrices and data, every expected value worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from affectlab.evaluation.analysis import (
    analyse,
    confusion_analysis,
    format_analysis,
    lowest_recall,
    mutual_confusions,
    quadrant_errors,
    top_confusions,
    va_error_analysis,
)

NAMES = ("A", "B", "C", "D")
#  rows = true, columns = predicted
CONFUSION = [
    [10, 6, 4, 0],  # A: 20 faces, 6 -> B (30%), 4 -> C (20%)
    [5, 12, 3, 0],  # B: 20 faces, 5 -> A (25%), 3 -> C (15%)
    [0, 1, 18, 1],  # C: 20 faces, 1 -> B (5%), 1 -> D (5%)
    [0, 0, 9, 1],  # D: 10 faces, 9 -> C (90%)
]


def test_top_confusions_by_count_with_share_of_true_class() -> None:
    top = top_confusions(CONFUSION, NAMES, k=5)
    assert [(r["true"], r["predicted"], r["count"]) for r in top] == [
        ("D", "C", 9),
        ("A", "B", 6),
        ("B", "A", 5),
        ("A", "C", 4),
        ("B", "C", 3),
    ]
    assert [r["share"] for r in top] == pytest.approx([0.9, 0.3, 0.25, 0.2, 0.15])


def test_top_confusions_break_ties_by_share_then_order_and_skip_empty_cells() -> None:
    #  A->B and C->A both 2; A has 4 faces (50%), C has 10 (20%): A->B comes first. Nothing else is off-diagonal.
    matrix = [[2, 2, 0], [0, 5, 0], [2, 0, 8]]
    top = top_confusions(matrix, ("A", "B", "C"), k=5)
    assert [(r["true"], r["predicted"], r["share"]) for r in top] == [("A", "B", 0.5), ("C", "A", 0.2)]


def test_pairs_confused_both_ways_need_ten_percent_each_way() -> None:
    pairs = mutual_confusions(CONFUSION, NAMES)
    # A<->B: 6/20 and 5/20; C<->D: 9/10 but only 1/20 = 5% back; A<->C: 4/20 and 0; B<->C: 3/20 and 1/20.
    assert [(p["a"], p["b"], p["a_to_b"], p["b_to_a"]) for p in pairs] == [("A", "B", 6, 5)]
    assert pairs[0]["a_to_b_share"] == pytest.approx(0.30) and pairs[0]["b_to_a_share"] == pytest.approx(0.25)
    assert [(p["a"], p["b"]) for p in mutual_confusions(CONFUSION, NAMES, min_share=0.05)] == [
        ("A", "B"),
        ("C", "D"),
        ("B", "C"),  # by the two counts together: 11, 10, 4
    ]


def test_lowest_recall_names_where_the_faces_went() -> None:
    low = lowest_recall(CONFUSION, NAMES, k=3)
    # recalls: A 10/20 = .5, B 12/20 = .6, C 18/20 = .9, D 1/10 = .1
    assert [(r["class"], r["recall"], r["most_predicted_as"]) for r in low] == [
        ("D", 0.1, "C"),
        ("A", 0.5, "B"),
        ("B", 0.6, "A"),
    ]
    # a class with no test faces has no recall and is left out
    assert [r["class"] for r in lowest_recall([[3, 1], [0, 0]], ("A", "B"))] == ["A"]


def test_confusion_sentence_says_the_numbers() -> None:
    result = confusion_analysis(CONFUSION, NAMES)
    assert result["sentence"] == (
        "The most frequent confusion is D taken for C (9 faces, 90% of D); confused both ways: A/B; "
        "D is recognised least (recall 0.10, mostly as C)."
    )
    perfect = confusion_analysis(np.eye(4, dtype=int) * 5, NAMES)
    assert perfect["top_confusions"] == [] and perfect["sentence"] == "No test face was misclassified."


def test_bad_matrices_are_refused() -> None:
    with pytest.raises(ValueError, match="4 x 4"):
        top_confusions([[1, 2], [3, 4]], NAMES)
    with pytest.raises(ValueError, match="non-negative"):
        top_confusions([[1, -2], [3, 4]], ("A", "B"))


# Hand-made V/A data: two faces per quadrant except V- A- (none), a label of exactly 0 counts as +.
VA_TRUE = np.array(
    [
        [0.5, 0.5],
        [0.0, 0.2],  # V+ A+
        [-0.5, 0.5],
        [-0.2, 0.0],  # V- A+
        [0.4, -0.4],
        [0.6, -0.2],  # V+ A-
    ]
)
VA_PRED = np.array(
    [
        [0.3, 0.5],
        [0.1, 0.2],  # V errors .2, .1; A errors 0, 0
        [-0.1, 0.2],
        [0.2, 0.4],  # V errors .4, .4; A errors .3, .4; the second face has the wrong V sign
        [0.4, -0.4],
        [0.6, 0.2],  # V errors 0, 0; A errors 0, .4, the second face has the wrong A sign
    ]
)


def test_quadrant_rmse_and_sagr_by_hand() -> None:
    rows = {q["quadrant"]: q for q in quadrant_errors(VA_TRUE, VA_PRED)}
    assert [q["n"] for q in rows.values()] == [2, 2, 0, 2]
    pp, mp, pm = rows["V+ A+"], rows["V- A+"], rows["V+ A-"]
    assert pp["rmse_valence"] == pytest.approx(np.sqrt((0.04 + 0.01) / 2))
    assert pp["rmse_arousal"] == pytest.approx(0.0, abs=1e-12)
    assert pp["rmse"] == pytest.approx(np.sqrt((0.04 + 0.01) / 4))  # over both dimensions: 4 squared errors
    # true V 0.0 vs predicted 0.1: sign 0 against +1 disagrees (SAGR's literal definition)
    assert (pp["sagr_valence"], pp["sagr_arousal"]) == (0.5, 1.0)
    assert mp["rmse_valence"] == pytest.approx(0.4) and mp["rmse_arousal"] == pytest.approx(np.sqrt((0.09 + 0.16) / 2))
    assert mp["rmse"] == pytest.approx(np.sqrt((0.16 + 0.16 + 0.09 + 0.16) / 4))
    assert (mp["sagr_valence"], mp["sagr_arousal"]) == (0.5, 0.5)  # A: true 0.0 (sign 0) vs 0.4
    assert pm["rmse_arousal"] == pytest.approx(np.sqrt(0.16 / 2)) and pm["sagr_arousal"] == 0.5
    assert rows["V- A-"]["rmse"] is None and rows["V- A-"]["sagr_valence"] is None


def test_bias_and_sentence_by_hand() -> None:
    result = va_error_analysis(VA_TRUE, VA_PRED)
    # mean true V = (0.5+0-0.5-0.2+0.4+0.6)/6 = 0.8/6; mean pred V = (0.3+0.1-0.1+0.2+0.4+0.6)/6 = 1.5/6
    assert result["bias"]["valence"] == pytest.approx(0.7 / 6)
    # mean true A = (0.5+0.2+0.5+0-0.4-0.2)/6 = 0.6/6; mean pred A = (0.5+0.2+0.2+0.4-0.4+0.2)/6 = 1.1/6
    assert result["bias"]["arousal"] == pytest.approx(0.5 / 6)
    assert result["sentence"].startswith("The V/A error is largest for V- A+ faces (angry, afraid; RMSE 0.377, n = 2)")
    assert "smallest for V+ A+ (0.112, n = 2)" in result["sentence"]
    assert "+0.117 in valence and +0.083 in arousal" in result["sentence"]


def test_analysis_section_is_json_and_prints() -> None:
    classification = {"confusion": CONFUSION}
    section = analyse(classification, VA_TRUE, VA_PRED, NAMES)
    assert set(section) == {"confusions", "va_errors"}
    json.dumps(section, allow_nan=False)
    text = format_analysis(section)
    assert "        D -> C             9   90%" in text
    assert "V- A-  n     0  RMSE -/-  SAGR -/-" in text
    assert set(analyse(None, VA_TRUE, VA_PRED, NAMES)) == {"va_errors"}
    assert set(analyse(classification, None, None, NAMES)) == {"confusions"}
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        va_error_analysis(VA_TRUE[:, 0], VA_PRED[:, 0])
