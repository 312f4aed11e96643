"""reports.run_groups: one summary of a group of runs, with one SD convention (the sample SD), and the thread
counts the runs trained with."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from affectlab.reports.run_groups import (
    SD_CONVENTION,
    Spread,
    lookup,
    read_run,
    sd_caption,
    spread,
    summarise_runs,
    threads_of,
)
from affectlab.studies import aggregate_runs


def _run(seed: int, accuracy: float, threads: int | None = None) -> dict:
    record = {"backbone": "b", "task": "classification", "weights": "none", "seed": seed}
    metrics = {"classification": {"accuracy": accuracy}, "robustness": {"damaged_mean": {"ece": 0.1 * seed}}}
    return {**record, "metrics": metrics, **({} if threads is None else {"machine": {"threads": threads}})}


def test_spread_is_the_sample_sd_and_none_for_one_seed() -> None:
    s = spread([0.4, 0.5, 0.6])
    assert (s.mean, s.n) == (pytest.approx(0.5), 3)
    assert s.sd == pytest.approx(statistics.stdev([0.4, 0.5, 0.6])) == pytest.approx(0.1)  # ddof=1, not 0.0816
    assert s.variance == pytest.approx(0.01) and s.cell() == "0.500 ± 0.100"
    one = spread([0.7])
    assert one.sd is None and one.variance is None and one.cell() == "0.700"
    assert Spread(**{k: v for k, v in s.to_dict().items() if k != "variance"}) == s
    assert sd_caption(3) == f"{SD_CONVENTION} over 3 seeds" == "mean ± sample SD (n − 1) over 3 seeds"


def test_summarise_runs_reads_each_group_and_skips_missing_figures() -> None:
    figures = {"acc": ("metrics", "classification", "accuracy"), "f1": ("metrics", "classification", "f1_macro")}
    summary = summarise_runs({"a": [_run(0, 0.4), _run(1, 0.6)], "b": [_run(0, 0.5)]}, figures)
    assert summary["a"]["acc"].sd == pytest.approx(0.1414, abs=1e-4) and "f1" not in summary["a"]
    assert summary["b"]["acc"] == Spread(0.5, None, 1)
    assert lookup({"x": [{"y": 2}]}, ("x", 0, "y")) == 2.0 and lookup({"x": True}, ("x",)) is None


def test_the_study_aggregate_uses_the_same_convention_and_keeps_its_keys() -> None:
    (entry,) = aggregate_runs([_run(0, 0.4), _run(1, 0.6), _run(2, 0.5)])
    assert entry["seeds"] == [0, 1, 2]
    assert entry["classification.accuracy"] == pytest.approx({"mean": 0.5, "std": 0.1, "n": 3})
    assert entry["robustness.damaged_mean.ece"]["std"] == pytest.approx(0.1)  # a dotted key reads nested values
    (single,) = aggregate_runs([_run(0, 0.4)])
    assert single["classification.accuracy"] == {"mean": 0.4, "std": None, "n": 1}


def test_threads_of_names_the_counts_and_unknown_for_old_runs() -> None:
    assert threads_of([_run(0, 0.5, 2), _run(1, 0.5, 2)]) == "2"
    assert threads_of([_run(0, 0.5, 4), _run(1, 0.5, 1), _run(2, 0.5)]) == "1, 4, unknown"
    assert threads_of([_run(0, 0.5)]) == "unknown" and threads_of([]) == "unknown"


def test_read_run_joins_a_folders_files(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"seed": 3, "machine": {"threads": 2}, "metrics": {"old": 1}}))
    (tmp_path / "metrics.json").write_text(json.dumps({"classification": {"accuracy": 0.5}}))
    (tmp_path / "cross_tool.json").write_text(json.dumps([{"accuracy": 0.4}]))
    record = read_run(tmp_path)
    assert record["seed"] == 3 and record["metrics"] == {"classification": {"accuracy": 0.5}}
    assert lookup(record, ("cross_tool", 0, "accuracy")) == 0.4 and threads_of([record]) == "2"
