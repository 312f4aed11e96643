"""``report.md`` and a self-contained ``report.html`` (figures inlined) from a study summary.

Both are rendered from the same list of blocks, so the two can never disagree.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from affectlab.atomic import write_text
from affectlab.reports.run_figures import FIGURE_NAMES

__all__ = ["write_study_report", "markdown_table", "REFERENCE_STUDY"]

#: The reference study's published test figures on the 3,999-image AffectNet set (600 test images).
REFERENCE_STUDY = {
    "vgg16": {"accuracy": 0.285, "f1_weighted": 0.273, "cohen_kappa": 0.183, "auc_ovr": 0.719,
              "rmse": (0.446, 0.360), "corr": (0.290, 0.280)},
    "mobilenet_v2": {"accuracy": 0.320, "f1_weighted": 0.301, "cohen_kappa": 0.223, "auc_ovr": 0.730,
                     "rmse": (0.445, 0.356), "corr": (0.291, 0.315)},
}

Block = tuple[str, Any]  # ("h2", text) | ("p", text) | ("table", (header, rows)) | ("img", (path, alt))


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}" if value["n"] > 1 else f"{value['mean']:.{digits}f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _classification_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for agg in summary["aggregate"]:
        if "classification.accuracy" not in agg:
            continue
        rows.append([agg["backbone"], agg["task"], agg["weights"],
                     *(_f(agg.get(f"classification.{k}")) for k in ("accuracy", "f1_weighted", "f1_macro", "cohen_kappa", "auc_ovr"))])
    return rows


def _regression_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for agg in summary["aggregate"]:
        if "valence.rmse" not in agg:
            continue
        cells = [agg["backbone"], agg["task"], agg["weights"]]
        for key in ("rmse", "corr", "sagr", "ccc"):
            cells += [_f(agg.get(f"valence.{key}")), _f(agg.get(f"arousal.{key}"))]
        rows.append(cells)
    return rows


def _blocks(summary: dict[str, Any]) -> list[Block]:
    data, runs, cfg = summary["data"], summary["runs"], summary["config"]
    seeds = sorted({r["seed"] for r in runs})
    blocks: list[Block] = [
        ("h1", "affectlab study report"),
        ("p", f"Data: `{data.get('path')}` ({data.get('layout')} layout), {data.get('samples')} samples; "
              f"split train/val/test = {data['counts'].get('train')}/{data['counts'].get('val')}/{data['counts'].get('test')}"
              f" (stratified, duplicate images kept in one split); excluded: {data.get('excluded') or 'none'}; "
              f"skipped bad samples: {len(data.get('skipped', []))}."),
        ("p", f"Models selected on the validation split only; the test split was scored once per model. "
              f"Seeds: {', '.join(map(str, seeds))}" + (" (mean ± std over seeds, each with its own split)." if len(seeds) > 1 else ".")),
        ("h2", "Emotion classification (test split)"),
        ("table", (["backbone", "task", "weights", "accuracy", "F1 weighted", "F1 macro", "Cohen kappa", "AUC (OvR)"],
                   _classification_rows(summary))),
        ("h2", "Valence / arousal regression (test split)"),
        ("table", (["backbone", "task", "weights", "RMSE V", "RMSE A", "CORR V", "CORR A", "SAGR V", "SAGR A", "CCC V", "CCC A"],
                   _regression_rows(summary))),
        ("h2", "Reference study (published, 600 AffectNet test images)"),
        ("table", (["backbone", "accuracy", "F1 weighted", "kappa", "AUC", "RMSE V/A", "CORR V/A"],
                   [[name, *(f"{r[k]:.3f}" for k in ("accuracy", "f1_weighted", "cohen_kappa", "auc_ovr")),
                     "{:.3f}/{:.3f}".format(*r["rmse"]), "{:.3f}/{:.3f}".format(*r["corr"])] for name, r in REFERENCE_STUDY.items()])),
        ("h2", "Weights and timings"),
        ("table", (["run", "weights used", "epochs (best)", "feature cache", "feature s", "train s"],
                   [[r["name"], r["weights_description"], f"{r['epochs_run']} ({r['best_epoch']})",
                     "yes" if r["used_feature_cache"] else "no", _f(r["feature_seconds"], 1), _f(r["train_seconds"], 1)] for r in runs])),
        ("p", f"Total wall time {summary['timing']['total_seconds']:.0f} s on {summary['machine']['platform']}, "
              f"torch {summary['machine']['torch']}, {summary['machine']['threads']} threads, CUDA: {summary['machine']['cuda']}."),
        ("h2", "Settings"),
        ("pre", "\n".join(f"{section}.{k}: {v}" for section in ("model", "train") for k, v in cfg[section].items())),
    ]
    for run in runs:
        blocks.append(("h2", f"Run {run['name']}"))
        for key in ("curves", "confusion", "circumplex", "grid"):
            path = Path(run["name"]) / FIGURE_NAMES[key]
            blocks.append(("img", (path, f"{run['name']} {key}")))
    return blocks


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """One GitHub-markdown table, shared by the study report and the benchmark scripts so they print alike."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows] or ["| (none) |"]
    return "\n".join(lines)


def _markdown(blocks: list[Block], root: Path) -> str:
    lines: list[str] = []
    for kind, value in blocks:
        if kind in ("h1", "h2"):
            lines += ["#" * int(kind[1]) + " " + value, ""]
        elif kind == "p":
            lines += [value, ""]
        elif kind == "pre":
            lines += ["```", value, "```", ""]
        elif kind == "table":
            lines += [markdown_table(*value), ""]
        elif kind == "img" and (root / value[0]).is_file():
            lines += [f"![{value[1]}]({value[0].as_posix()})", ""]
    return "\n".join(lines)


def _html(blocks: list[Block], root: Path) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>affectlab study report</title><style>",
             "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}",
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}",
             "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.5em 0}",
             "pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>"]
    for kind, value in blocks:
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{html.escape(value)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(value).replace('`', '')}</p>")
        elif kind == "pre":
            parts.append(f"<pre>{html.escape(value)}</pre>")
        elif kind == "table":
            header, rows = value
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
        elif kind == "img" and (root / value[0]).is_file():
            data = base64.b64encode((root / value[0]).read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(value[1])}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_study_report(out_dir: str | Path, summary: dict[str, Any]) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    blocks = _blocks(summary)
    return (write_text(out_dir / "report.md", _markdown(blocks, out_dir)),
            write_text(out_dir / "report.html", _html(blocks, out_dir)))
