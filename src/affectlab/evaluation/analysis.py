"""What a model gets wrong: its most frequent confusions, and where on the circumplex its V/A error lies.

Headline metrics say how good a model is; this module says *how* it fails, so that a report can name the
emotions it mixes up (Anger taken for Contempt, Fear for Surprise) and the part of the valence/arousal plane
where it is least reliable. Every function is pure: plain arrays in, plain JSON-ready dicts out, no I/O, so the
same section appears in a study's report, in ``metrics.json`` and in ``affectlab evaluate``'s printout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import root_mean_squared_error

from affectlab.evaluation.metrics import sagr

__all__ = [
    "QUADRANTS",
    "analyse",
    "confusion_analysis",
    "format_analysis",
    "lowest_recall",
    "mutual_confusions",
    "quadrant_errors",
    "top_confusions",
    "va_error_analysis",
]

#: A direction of confusion counts as "frequent" for :func:`mutual_confusions` at this share of the true class.
MUTUAL_MIN_SHARE = 0.10

#: Circumplex quadrants by the signs of the *true* valence and arousal (a label of exactly 0 counts as +),
#: with the expressions that typically fall there.
QUADRANTS: dict[str, tuple[int, int, str]] = {
    "V+ A+": (1, 1, "excited, happy"),
    "V- A+": (-1, 1, "angry, afraid"),
    "V- A-": (-1, -1, "sad, bored"),
    "V+ A-": (1, -1, "calm, content"),
}


def _matrix(confusion: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    matrix = np.asarray(confusion, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion must be {len(class_names)} x {len(class_names)}, got {matrix.shape}")
    if (matrix < 0).any():
        raise ValueError("confusion counts must be non-negative")
    return matrix


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def top_confusions(
    confusion: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str], k: int = 5
) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal cells: true class, predicted class, count and share of the true class.

    Rows are true classes and columns predictions (scikit-learn's layout). Ties are broken by the larger share
    of the true class, then by class order, so the table is the same on every run. Empty cells are left out.
    """
    matrix = _matrix(confusion, class_names)
    totals = matrix.sum(axis=1)
    cells = [
        (int(matrix[t, p]), _share(int(matrix[t, p]), int(totals[t])), t, p)
        for t in range(len(class_names))
        for p in range(len(class_names))
        if t != p and matrix[t, p] > 0
    ]
    cells.sort(key=lambda c: (-c[0], -c[1], c[2], c[3]))
    return [
        {"true": class_names[t], "predicted": class_names[p], "count": count, "share": share}
        for count, share, t, p in cells[:k]
    ]


def mutual_confusions(
    confusion: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str], min_share: float = MUTUAL_MIN_SHARE
) -> list[dict[str, Any]]:
    """Pairs confused both ways: each class goes to the other for at least ``min_share`` of its true faces.

    A share rather than a count, so that the rule means the same on 600 test faces and on 60,000. Sorted by the
    two counts together, largest first.
    """
    matrix = _matrix(confusion, class_names)
    totals = matrix.sum(axis=1)
    pairs: list[dict[str, Any]] = []
    for a in range(len(class_names)):
        for b in range(a + 1, len(class_names)):
            ab, ba = _share(int(matrix[a, b]), int(totals[a])), _share(int(matrix[b, a]), int(totals[b]))
            if matrix[a, b] > 0 and matrix[b, a] > 0 and ab >= min_share and ba >= min_share:
                pairs.append(
                    {
                        "a": class_names[a],
                        "b": class_names[b],
                        "a_to_b": int(matrix[a, b]),
                        "b_to_a": int(matrix[b, a]),
                        "a_to_b_share": ab,
                        "b_to_a_share": ba,
                    }
                )
    pairs.sort(key=lambda p: (-(p["a_to_b"] + p["b_to_a"]), p["a"], p["b"]))
    return pairs


def lowest_recall(
    confusion: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str], k: int = 3
) -> list[dict[str, Any]]:
    """The ``k`` classes with the lowest recall (of those with test faces), each with where most of it went."""
    matrix = _matrix(confusion, class_names)
    rows: list[dict[str, Any]] = []
    for c, name in enumerate(class_names):
        support = int(matrix[c].sum())
        if support == 0:
            continue
        others = matrix[c].copy()
        others[c] = -1
        most = int(others.argmax())
        rows.append(
            {
                "class": name,
                "recall": int(matrix[c, c]) / support,
                "support": support,
                "most_predicted_as": class_names[most] if matrix[c, most] > 0 else None,
            }
        )
    rows.sort(key=lambda r: (r["recall"], list(class_names).index(r["class"])))
    return rows[:k]


def _confusion_sentence(top: list[dict[str, Any]], mutual: list[dict[str, Any]], low: list[dict[str, Any]]) -> str:
    if not top:
        return "No test face was misclassified."
    first = top[0]
    opening = (
        f"The most frequent confusion is {first['true']} taken for {first['predicted']} "
        f"({first['count']} faces, {first['share']:.0%} of {first['true']})"
    )
    parts = [opening]
    if mutual:
        names = ", ".join(f"{p['a']}/{p['b']}" for p in mutual[:3])
        parts.append(f"confused both ways: {names}")
    else:
        parts.append(f"no pair is confused both ways at {MUTUAL_MIN_SHARE:.0%} or more of each class")
    if low:
        worst = low[0]
        where = f", mostly as {worst['most_predicted_as']}" if worst["most_predicted_as"] else ""
        parts.append(f"{worst['class']} is recognised least (recall {worst['recall']:.2f}{where})")
    return "; ".join(parts) + "."


def confusion_analysis(confusion: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Top-5 confusions, pairs confused both ways, the 3 lowest-recall classes and one sentence saying it."""
    top = top_confusions(confusion, class_names)
    mutual = mutual_confusions(confusion, class_names)
    low = lowest_recall(confusion, class_names)
    return {
        "top_confusions": top,
        "mutual_confusions": mutual,
        "mutual_min_share": MUTUAL_MIN_SHARE,
        "lowest_recall": low,
        "sentence": _confusion_sentence(top, mutual, low),
    }


def _va_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 2 or t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must both have shape (N, 2), got {t.shape} and {p.shape}")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("y_true or y_pred contains NaN or inf")
    return t, p


def quadrant_errors(y_true: np.ndarray, y_pred: np.ndarray) -> list[dict[str, Any]]:
    """RMSE and SAGR of valence and arousal per circumplex quadrant of the true labels.

    ``rmse`` is over both dimensions together (the distance on the circumplex); empty quadrants get ``n = 0``
    and ``None`` values.
    """
    t, p = _va_pair(y_true, y_pred)
    signs = np.where(t >= 0, 1, -1)
    rows = []
    for name, (sv, sa, typical) in QUADRANTS.items():
        mask = (signs[:, 0] == sv) & (signs[:, 1] == sa)
        row: dict[str, Any] = {"quadrant": name, "typical": typical, "n": int(mask.sum())}
        if mask.any():
            tq, pq = t[mask], p[mask]
            row.update(
                {
                    "rmse": float(np.sqrt(np.mean((tq - pq) ** 2))),
                    "rmse_valence": float(root_mean_squared_error(tq[:, 0], pq[:, 0])),
                    "rmse_arousal": float(root_mean_squared_error(tq[:, 1], pq[:, 1])),
                    "sagr_valence": sagr(tq[:, 0], pq[:, 0]),
                    "sagr_arousal": sagr(tq[:, 1], pq[:, 1]),
                }
            )
        else:
            row.update(dict.fromkeys(("rmse", "rmse_valence", "rmse_arousal", "sagr_valence", "sagr_arousal")))
        rows.append(row)
    return rows


def va_error_analysis(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Quadrant errors, bias (mean predicted - mean true) per dimension, and one sentence.

    Bias is the part of the error that CCC penalises and Pearson's r ignores: a model that shrinks every
    prediction towards the training mean has a bias wherever the test set's mean differs from it.
    """
    t, p = _va_pair(y_true, y_pred)
    quadrants = quadrant_errors(t, p)
    bias = {"valence": float(p[:, 0].mean() - t[:, 0].mean()), "arousal": float(p[:, 1].mean() - t[:, 1].mean())}
    filled = [q for q in quadrants if q["n"] > 0]
    worst = max(filled, key=lambda q: q["rmse"])
    best = min(filled, key=lambda q: q["rmse"])
    sentence = (
        f"The V/A error is largest for {worst['quadrant']} faces ({worst['typical']}; RMSE {worst['rmse']:.3f}, "
        f"n = {worst['n']}) and smallest for {best['quadrant']} ({best['rmse']:.3f}, n = {best['n']}); "
        f"predictions are biased by {bias['valence']:+.3f} in valence and {bias['arousal']:+.3f} in arousal."
    )
    return {"quadrants": quadrants, "bias": bias, "sentence": sentence}


def analyse(
    classification: dict[str, Any] | None,
    va_true: np.ndarray | None,
    va_pred: np.ndarray | None,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """The ``analysis`` section of ``metrics.json``: whichever of the two parts the task has."""
    out: dict[str, Any] = {}
    if classification is not None:
        out["confusions"] = confusion_analysis(classification["confusion"], class_names)
    if va_true is not None and va_pred is not None:
        out["va_errors"] = va_error_analysis(va_true, va_pred)
    return out


def _n(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def format_analysis(analysis: dict[str, Any]) -> str:
    """Plain-text rendering for the terminal (``affectlab evaluate``)."""
    lines: list[str] = []
    if "confusions" in analysis:
        c = analysis["confusions"]
        lines.append("most frequent confusions (true -> predicted, count, share of true class):")
        lines += [
            f"  {r['true']:>9} -> {r['predicted']:<9} {r['count']:>5}  {r['share']:>4.0%}" for r in c["top_confusions"]
        ]
        lines.append("lowest recall: " + ", ".join(f"{r['class']} {r['recall']:.2f}" for r in c["lowest_recall"]))
        lines.append(c["sentence"])
    if "va_errors" in analysis:
        v = analysis["va_errors"]
        lines.append("V/A error per quadrant of the true labels (RMSE V/A, SAGR V/A):")
        lines += [
            f"  {q['quadrant']}  n {q['n']:>5}  RMSE {_n(q['rmse_valence'])}/{_n(q['rmse_arousal'])}  "
            f"SAGR {_n(q['sagr_valence'])}/{_n(q['sagr_arousal'])}"
            for q in v["quadrants"]
        ]
        lines.append(
            f"bias (mean predicted - mean true): valence {v['bias']['valence']:+.3f}, "
            f"arousal {v['bias']['arousal']:+.3f}"
        )
        lines.append(v["sentence"])
    return "\n".join(lines)
