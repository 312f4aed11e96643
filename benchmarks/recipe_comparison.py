"""Recipes and training data compared over seeds, from trained run folders: what users get, and across datasets.

Issue 22's ablation and issue 23's cross-dataset table are read from the same runs. Each group is one recipe on
one set of training sources, trained with several seeds, given as ``NAME=RUN[,RUN...]``; the first group is the
baseline. Two tables come out:

- **What users get**: per group, mean ± SD over seeds of the clean test accuracy, macro-F1 and V/A CCC, py-feat's
  protocol (from each run's ``cross_tool.json``, written by ``benchmarks/cross_tool.py --out RUN/cross_tool.json``,
  where there is one), the faces-in-scenes share and the robustness mean. The SD is the population SD, as in the
  study report and the cross-dataset table. Below them, one **noise row** per group: its difference from the
  baseline, ± the standard error of that difference (Welch, from the sample variances over seeds). A difference
  inside two standard errors is noise. The clean figures are each run's headline scores, on the test split of the
  first source it trained on: compare groups trained on another first source in the second table only.
- **Across datasets**: ``affectlab.reports.cross_dataset``'s table (each source's test split, 8 classes / the
  classes every source labels, in-domain cells marked), one row per group, for runs that were scored on several
  sources (``--data A --data B``, trained on some of them with ``data.train_on``).

    python benchmarks/recipe_comparison.py best=runs/best-s0,runs/best-s1,runs/best-s2 \
        camera=runs/camera-s0,runs/camera-s1,runs/camera-s2 [--out comparison.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from affectlab.atomic import write_json
from affectlab.reports.cross_dataset import cross_dataset_table
from affectlab.reports.study_report import markdown_table

#: name -> (file, keys into it). ``metrics.json`` is the run's test evaluation; ``cross_tool.json`` py-feat's protocol.
FIGURES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "accuracy": ("metrics.json", ("classification", "accuracy")),
    "f1_macro": ("metrics.json", ("classification", "f1_macro")),
    "ccc_valence": ("metrics.json", ("valence", "ccc")),
    "ccc_arousal": ("metrics.json", ("arousal", "ccc")),
    "pyfeat_accuracy": ("cross_tool.json", (0, "accuracy")),
    "pyfeat_f1_macro": ("cross_tool.json", (0, "f1_macro")),
    "pyfeat_ccc_valence": ("cross_tool.json", (0, "ccc_valence")),
    "pyfeat_ccc_arousal": ("cross_tool.json", (0, "ccc_arousal")),
    "scenes_share": ("metrics.json", ("faces_in_scenes", "accuracy_ratio")),
    "robustness_share": ("metrics.json", ("robustness", "accuracy_relative")),
    "robustness_valence": ("metrics.json", ("robustness", "valence_ccc_relative")),
    "robustness_arousal": ("metrics.json", ("robustness", "arousal_ccc_relative")),
}
#: The table's columns: a header and the figures it shows, joined by " / ".
COLUMNS = (
    ("clean acc", ("accuracy",)),
    ("clean F1 macro", ("f1_macro",)),
    ("clean CCC V / A", ("ccc_valence", "ccc_arousal")),
    ("py-feat protocol acc / F1", ("pyfeat_accuracy", "pyfeat_f1_macro")),
    ("py-feat CCC V / A", ("pyfeat_ccc_valence", "pyfeat_ccc_arousal")),
    ("scenes share", ("scenes_share",)),
    ("robustness acc / V / A", ("robustness_share", "robustness_valence", "robustness_arousal")),
)


def _lookup(document: Any, keys: tuple[Any, ...]) -> float | None:
    for key in keys:
        if isinstance(key, int):
            document = document[key] if isinstance(document, list) and len(document) > key else None
        else:
            document = document.get(key) if isinstance(document, dict) else None
    return float(document) if isinstance(document, (int, float)) else None


def run_figures(run: Path) -> dict[str, float]:
    """The figures a run folder has (a run without ``cross_tool.json`` has no py-feat figures)."""
    documents = {name: json.loads((run / name).read_text()) for name in ("metrics.json", "cross_tool.json")
                 if (run / name).exists()}  # fmt: skip
    found = {}
    for name, (file, keys) in FIGURES.items():
        value = _lookup(documents.get(file), keys)
        if value is not None:
            found[name] = value
    return found


def summarise(runs: list[Path]) -> dict[str, Any]:
    """Mean, population SD, count and sample variance (for the noise rows) of every figure over ``runs``."""
    per_run = [run_figures(run) for run in runs]
    summary: dict[str, Any] = {}
    for name in FIGURES:
        values = [figures[name] for figures in per_run if name in figures]
        if values:
            sample = statistics.variance(values) if len(values) > 1 else None  # one seed: no spread to estimate
            summary[name] = {"mean": statistics.fmean(values), "sd": statistics.pstdev(values), "n": len(values),
                             "variance": sample}  # fmt: skip
    return summary


def _cell(summary: dict[str, Any], names: tuple[str, ...]) -> str:
    parts = []
    for name in names:
        if name not in summary:
            parts.append("-")
            continue
        mean, sd, n = summary[name]["mean"], summary[name]["sd"], summary[name]["n"]
        parts.append(f"{mean:.3f}" + ("" if n < 2 else f" ± {sd:.3f}"))
    return " / ".join(parts)


def _difference(summary: dict[str, Any], baseline: dict[str, Any], names: tuple[str, ...]) -> str:
    """The difference of means from the baseline ± its standard error (Welch: sqrt(s1²/n1 + s2²/n2))."""
    parts = []
    for name in names:
        if name not in summary or name not in baseline:
            parts.append("-")
            continue
        a, b = summary[name], baseline[name]
        known = a["variance"] is not None and b["variance"] is not None  # both groups have 2+ seeds
        error = f" ± {math.sqrt(a['variance'] / a['n'] + b['variance'] / b['n']):.3f}" if known else ""
        parts.append(f"{a['mean'] - b['mean']:+.3f}{error}")
    return " / ".join(parts)


def users_table(groups: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): a row per group, then a noise row per group after the first."""
    names = list(groups)
    header = ["group", "seeds", *(title for title, _ in COLUMNS)]
    rows = [[name, str(max((f["n"] for f in groups[name].values()), default=0)),
             *(_cell(groups[name], figures) for _, figures in COLUMNS)] for name in names]  # fmt: skip
    baseline = groups[names[0]]
    for name in names[1:]:
        rows.append([f"Δ {name} − {names[0]} (± SE)", "", *(_difference(groups[name], baseline, figures)
                                                           for _, figures in COLUMNS)])  # fmt: skip
    return header, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("groups", nargs="+", help="NAME=RUN[,RUN...], the baseline first")
    parser.add_argument("--out", type=Path, help="also write every group's figures and the tables as JSON")
    args = parser.parse_args()

    members: dict[str, list[Path]] = {}
    for group in args.groups:
        name, _, runs = group.partition("=")
        if not name or not runs:
            raise SystemExit(f"{group!r}: expected NAME=RUN[,RUN...]")
        members[name] = [Path(run) for run in runs.split(",")]
        for run in members[name]:
            if not (run / "metrics.json").exists():
                raise SystemExit(f"{run}: no metrics.json; is it a finished run folder?")
    groups = {name: summarise(runs) for name, runs in members.items()}
    header, rows = users_table(groups)
    print(markdown_table(header, rows))

    records = []
    for name, runs in members.items():
        for run in runs:
            if (run / "run.json").exists():
                records.append({**json.loads((run / "run.json").read_text()), "group": name})
    across = cross_dataset_table(records)
    if across is not None:
        across_header, across_rows, shared = across
        print(f"\nAcross datasets (test accuracy: 8 classes / the {len(shared)} classes every source labels):\n")
        print(markdown_table(across_header, across_rows))
    if args.out:
        tables = {"users": {"header": header, "rows": rows}}
        if across is not None:
            tables["across"] = {"header": across[0], "rows": across[1], "shared": across[2]}
        write_json(args.out, {"groups": groups, "runs": {k: [str(r) for r in v] for k, v in members.items()},
                              "tables": tables})  # fmt: skip


if __name__ == "__main__":
    main()
