"""Issue 27's expression experiment: does FaceMesh's face-trained trunk help the expression model?

Summarises trained runs by group (mean and seed standard deviation of test accuracy, macro-F1, V/A CCC, the
faces-in-scenes share and the robustness mean, all from each run's ``metrics.json``), then measures the size and
speed of each group's network side by side in one process (PyTorch, batch 1 and 32, CPU seconds of this process:
robust on a shared machine). Runs are given as ``NAME=RUN[,RUN...]``:

    python benchmarks/facemesh_expression.py frozen=runs/fm-frozen-s0,runs/fm-frozen-s1 \
        tuned=runs/fm-tuned-s0,runs/fm-tuned-s1 [--baseline runs/best-s0,runs/best-s1] [--out fm.json]

``--baseline`` names runs whose network is measured for speed (and summarised like the others); without runs, the
best recipe's network (MobileNetV2 at 160 px) is built untrained for the speed columns only.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from affectlab.config import ModelConfig
from affectlab.evaluation.efficiency import count_flops, count_parameters, cpu_ms_per_call
from affectlab.models.affect_model import create_model
from affectlab.models.checkpoint import load_checkpoint

FIGURES = {
    "accuracy": ("classification", "accuracy"),
    "f1_macro": ("classification", "f1_macro"),
    "ccc_valence": ("valence", "ccc"),
    "ccc_arousal": ("arousal", "ccc"),
    "scenes_share": ("faces_in_scenes", "accuracy_ratio"),
    "robustness_share": ("robustness", "accuracy_relative"),
}


def figures(run: Path) -> dict[str, float]:
    metrics = json.loads((run / "metrics.json").read_text())
    found: dict[str, float] = {}
    for name, (section, key) in FIGURES.items():
        value = (metrics.get(section) or {}).get(key)
        if isinstance(value, (int, float)):
            found[name] = float(value)
    return found


def summarise(runs: list[Path]) -> dict[str, Any]:
    per_run = [figures(run) for run in runs]
    summary: dict[str, Any] = {"runs": [str(r) for r in runs], "per_run": per_run}
    for name in FIGURES:
        values = [f[name] for f in per_run if name in f]
        if values:
            spread = statistics.stdev(values) if len(values) > 1 else float("nan")
            summary[name] = {"mean": round(statistics.fmean(values), 4), "sd": round(spread, 4), "n": len(values)}
    return summary


def cpu_ms(model: torch.nn.Module, size: int, batch: int, calls: int = 20) -> float:
    images = torch.rand(batch, 3, size, size)
    with torch.inference_mode():
        return cpu_ms_per_call(lambda: model(images), calls)


def network_of(run: Path | None) -> tuple[torch.nn.Module, int]:
    if run is None:
        config = ModelConfig(backbone="mobilenet_v2", weights="none", task="multitask", freeze=False, input_size=160)
        return create_model(config).eval(), config.input_size
    model, meta = load_checkpoint(run / "model.pt")
    return model.eval(), meta.preprocess.input_size


def size_and_speed(model: torch.nn.Module, size: int) -> dict[str, Any]:
    return {
        "input_size": size,
        "params": count_parameters(model),
        "mflops": round(count_flops(model, size) / 1e6, 1),
        "cpu_ms_batch1": cpu_ms(model, size, 1),
        "cpu_ms_per_face_batch32": round(cpu_ms(model, size, 32, calls=5) / 32, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="+", help="NAME=RUN[,RUN...]")
    parser.add_argument("--baseline", default="", help="runs of the recipe without FaceMesh (comma-separated)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    groups = {name: [Path(r) for r in runs.split(",")] for name, runs in (g.split("=", 1) for g in args.groups)}
    baseline = [Path(r) for r in args.baseline.split(",") if r]
    report: dict[str, Any] = {"threads": args.threads, "groups": {}}
    for name, runs in {**({"without": baseline} if baseline else {}), **groups}.items():
        report["groups"][name] = summarise(runs)
    speed_of = {"without": baseline[0] if baseline else None, **{name: runs[0] for name, runs in groups.items()}}
    for name, run in speed_of.items():
        report["groups"].setdefault(name, {})["network"] = size_and_speed(*network_of(run))
    for name, group in report["groups"].items():
        cells = [f"{k} {v['mean']:.3f}±{v['sd']:.3f}" for k, v in group.items() if isinstance(v, dict) and "mean" in v]
        net = group["network"]
        print(f"{name}: {', '.join(cells)}")
        print(
            f"  {net['params']['total']:,} params, {net['mflops']} MFLOPs at {net['input_size']} px, "
            f"{net['cpu_ms_batch1']} ms at batch 1, {net['cpu_ms_per_face_batch32']} ms/face at batch 32"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
