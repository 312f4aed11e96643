"""Recipes and training data compared over seeds, from trained run folders: what users get, and across datasets.

Issue 22's ablation and issue 23's cross-dataset table are read from the same runs. Each group is one recipe on
one set of training sources, trained with several seeds, given as ``NAME=RUN[,RUN...]``; the first group is the
baseline. Two tables come out:

- **What users get**: per group, mean ± SD over seeds of the clean test accuracy, macro-F1 and V/A CCC, py-feat's
  protocol (from each run's ``cross_tool.json``, written by ``benchmarks/cross_tool.py --out RUN/cross_tool.json``,
  where there is one), the faces-in-scenes share and the robustness mean, and the intra-op thread counts the runs
  trained with. The SD is the sample SD (n − 1), as in the study report and the cross-dataset table: one
  convention, ``affectlab.reports.run_groups``. Below them, one **noise row** per group: its difference from the
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
from pathlib import Path
from typing import Any

from affectlab.atomic import write_json
from affectlab.reports.cross_dataset import cross_dataset_table
from affectlab.reports.run_groups import SD_CONVENTION, FigurePath, Spread, read_run, summarise_runs, threads_of
from affectlab.reports.study_report import markdown_table

#: name -> keys into the run's record (``reports.run_groups.read_run``): ``metrics`` is the run's test evaluation
#: (``metrics.json``), ``cross_tool`` py-feat's protocol (``cross_tool.json``).
FIGURES: dict[str, FigurePath] = {
    "accuracy": ("metrics", "classification", "accuracy"),
    "f1_macro": ("metrics", "classification", "f1_macro"),
    "ccc_valence": ("metrics", "valence", "ccc"),
    "ccc_arousal": ("metrics", "arousal", "ccc"),
    "pyfeat_accuracy": ("cross_tool", 0, "accuracy"),
    "pyfeat_f1_macro": ("cross_tool", 0, "f1_macro"),
    "pyfeat_ccc_valence": ("cross_tool", 0, "ccc_valence"),
    "pyfeat_ccc_arousal": ("cross_tool", 0, "ccc_arousal"),
    "scenes_share": ("metrics", "faces_in_scenes", "accuracy_ratio"),
    "robustness_share": ("metrics", "robustness", "accuracy_relative"),
    "robustness_valence": ("metrics", "robustness", "valence_ccc_relative"),
    "robustness_arousal": ("metrics", "robustness", "arousal_ccc_relative"),
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


def summarise(runs: list[Path]) -> dict[str, Any]:
    """Mean, sample SD, count and sample variance (for the noise rows) of every figure over ``runs``
    (``reports.run_groups``; SD and variance are None for one seed)."""
    return {
        name: value.to_dict() for name, value in summarise_runs({"": [read_run(r) for r in runs]}, FIGURES)[""].items()
    }


def _cell(summary: dict[str, Any], names: tuple[str, ...]) -> str:
    return " / ".join(Spread(**{k: summary[name][k] for k in ("mean", "sd", "n")}).cell() if name in summary else "-"
                      for name in names)  # fmt: skip


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


def users_table(
    groups: dict[str, dict[str, Any]], threads: dict[str, str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """(header, rows): a row per group, then a noise row per group after the first. ``threads``: each group's
    intra-op thread counts (``reports.run_groups.threads_of``), "unknown" where not given."""
    names = list(groups)
    threads = threads or {}
    header = ["group", "seeds", "threads", *(title for title, _ in COLUMNS)]
    rows = [[name, str(max((f["n"] for f in groups[name].values()), default=0)), threads.get(name, "unknown"),
             *(_cell(groups[name], figures) for _, figures in COLUMNS)] for name in names]  # fmt: skip
    baseline = groups[names[0]]
    for name in names[1:]:
        rows.append([f"Δ {name} − {names[0]} (± SE)", "", "", *(_difference(groups[name], baseline, figures)
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
    threads = {name: threads_of(read_run(run) for run in runs) for name, runs in members.items()}
    header, rows = users_table(groups, threads)
    seeds = sorted({max((f["n"] for f in group.values()), default=0) for group in groups.values()})
    print(f"{SD_CONVENTION} over {'/'.join(map(str, seeds))} seeds; threads: the intra-op thread counts the "
          "runs trained with\n")  # fmt: skip
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
        tables = {"users": {"header": header, "rows": rows, "caption": f"{SD_CONVENTION} over seeds"}}
        if across is not None:
            tables["across"] = {"header": across[0], "rows": across[1], "shared": across[2]}
        write_json(args.out, {"groups": groups, "runs": {k: [str(r) for r in v] for k, v in members.items()},
                              "threads": threads, "tables": tables})  # fmt: skip


if __name__ == "__main__":
    main()
