"""Figures of groups of runs, summarised one way: the mean and the sample standard deviation over seeds.

A group is one recipe (or one cell of a study) trained with several seeds. The study's aggregate, its
cross-dataset table, ``benchmarks/recipe_comparison.py`` and ``benchmarks/facemesh_expression.py`` all summarise
through ``summarise_runs``, so "± SD" means the same everywhere: the sample SD (n - 1 in the denominator), the
usual one for "mean ± SD over 3 seeds"; it is undefined (None) for a single seed. Every table that shows it says
so with ``sd_caption``. The variance beside it is the same sample variance, which a difference's standard error
needs.

A CPU run's figures also move with the number of intra-op threads that trained it (the order of its float
reductions), so each run records it (``run.json``: ``machine.threads``) and a table says which counts its runs
were made with (``threads_of``; "unknown" for runs made before it was recorded).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "SD_CONVENTION",
    "FigurePath",
    "Spread",
    "lookup",
    "read_run",
    "run_figures",
    "sd_caption",
    "spread",
    "summarise_runs",
    "threads_of",
]

#: How every multi-seed table states its spread.
SD_CONVENTION = "mean ± sample SD (n − 1)"

#: Keys into a run's record, from the top: ``("metrics", "classification", "accuracy")``; an int indexes a list.
FigurePath = tuple[str | int, ...]

K = TypeVar("K")


@dataclass(frozen=True)
class Spread:
    """A figure over the seeds of a group: mean, sample SD (None for one seed) and the number of seeds."""

    mean: float
    sd: float | None
    n: int

    @property
    def variance(self) -> float | None:
        """The sample variance (n - 1), for standard errors; None for one seed."""
        return None if self.sd is None else self.sd**2

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "sd": self.sd, "n": self.n, "variance": self.variance}

    def cell(self, digits: int = 3) -> str:
        """``0.500 ± 0.100``, or the mean alone for one seed."""
        return f"{self.mean:.{digits}f}" + ("" if self.sd is None else f" ± {self.sd:.{digits}f}")


def spread(values: Iterable[float]) -> Spread:
    """Mean and sample SD of one figure over seeds."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("spread of no values")
    return Spread(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


def lookup(document: Any, path: FigurePath) -> float | None:
    """The number at ``path`` in a JSON document; None where a level is missing or the value is not a number."""
    for key in path:
        if isinstance(key, int):
            document = document[key] if isinstance(document, list) and len(document) > key else None
        else:
            document = document.get(key) if isinstance(document, dict) else None
    if isinstance(document, bool) or not isinstance(document, (int, float)):
        return None
    return float(document)


def run_figures(run: Mapping[str, Any], figures: Mapping[str, FigurePath]) -> dict[str, float]:
    """The figures a run's record has (a run without a section has none of its figures)."""
    found = {name: lookup(run, path) for name, path in figures.items()}
    return {name: value for name, value in found.items() if value is not None}


def summarise_runs(
    groups: Mapping[K, Sequence[Mapping[str, Any]]], figures: Mapping[str, FigurePath]
) -> dict[K, dict[str, Spread]]:
    """Every group's ``Spread`` of every figure its runs have, in ``figures``' order.

    A run is a record as ``run.json`` holds it (``metrics`` inside); ``read_run`` makes one from a run folder.
    """
    summary: dict[K, dict[str, Spread]] = {}
    for group, runs in groups.items():
        per_run = [run_figures(run, figures) for run in runs]
        summary[group] = {}
        for name in figures:
            values = [found[name] for found in per_run if name in found]
            if values:
                summary[group][name] = spread(values)
    return summary


def read_run(folder: str | Path) -> dict[str, Any]:
    """A run folder as one record: its ``run.json`` (if any), ``metrics.json`` under ``metrics`` and (where
    ``benchmarks/cross_tool.py`` wrote one) ``cross_tool.json`` under ``cross_tool``."""
    folder = Path(folder)
    record: dict[str, Any] = {}
    for file, key in (("run.json", None), ("metrics.json", "metrics"), ("cross_tool.json", "cross_tool")):
        if (folder / file).exists():
            document = json.loads((folder / file).read_text())
            record.update(document if key is None else {key: document})
    return record


def sd_caption(seeds: int) -> str:
    """``mean ± sample SD (n − 1) over 3 seeds``: what a table's ± means."""
    return f"{SD_CONVENTION} over {seeds} seed{'s' if seeds != 1 else ''}"


def threads_of(runs: Iterable[Mapping[str, Any]]) -> str:
    """The intra-op thread counts the runs were trained with (``2``, ``1, 2``), ``unknown`` for runs made before
    ``run.json`` recorded it."""
    counts = {(run.get("machine") or {}).get("threads") for run in runs}
    known = sorted(c for c in counts if isinstance(c, int))
    return ", ".join([*map(str, known), *(["unknown"] if len(known) < len(counts) else [])]) or "unknown"
