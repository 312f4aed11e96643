"""Issue 27's expression experiment: does FaceMesh's face-trained trunk help the expression model?

Summarises trained runs by group (mean and sample SD over seeds, ``affectlab.reports.run_groups``, of test
accuracy, macro-F1, V/A CCC, the faces-in-scenes share and the robustness mean, all from each run's
``metrics.json``, and the intra-op thread counts the runs trained with), then measures the size and speed of
each group's network side by side in one process (PyTorch, batch 1 and 32, CPU seconds of this process: robust
on a shared machine). Runs are given as ``NAME=RUN[,RUN...]``:

    python benchmarks/facemesh_expression.py frozen=runs/fm-frozen-s0,runs/fm-frozen-s1 \
        tuned=runs/fm-tuned-s0,runs/fm-tuned-s1 [--baseline runs/best-s0,runs/best-s1] [--out fm.json]

``--baseline`` names runs whose network is measured for speed (and summarised like the others); without runs, the
best recipe's network (MobileNetV2 at 160 px) is built untrained for the speed columns only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from affectlab.atomic import write_json
from affectlab.config import ModelConfig
from affectlab.evaluation.efficiency import count_flops, count_parameters, cpu_ms_per_call
from affectlab.models.affect_model import create_model
from affectlab.models.checkpoint import load_checkpoint
from affectlab.reports.run_groups import (
    SD_CONVENTION,
    FigurePath,
    Spread,
    read_run,
    run_figures,
    summarise_runs,
    threads_of,
)

FIGURES: dict[str, FigurePath] = {
    "accuracy": ("metrics", "classification", "accuracy"),
    "f1_macro": ("metrics", "classification", "f1_macro"),
    "ccc_valence": ("metrics", "valence", "ccc"),
    "ccc_arousal": ("metrics", "arousal", "ccc"),
    "scenes_share": ("metrics", "faces_in_scenes", "accuracy_ratio"),
    "robustness_share": ("metrics", "robustness", "accuracy_relative"),
}


def summarise(runs: list[Path]) -> dict[str, Any]:
    """Each figure's mean and sample SD over ``runs`` (``reports.run_groups``; SD None for one run), rounded."""
    records = [read_run(run) for run in runs]
    summary: dict[str, Any] = {"runs": [str(r) for r in runs], "per_run": [run_figures(r, FIGURES) for r in records]}
    summary["threads"] = threads_of(records)
    for name, value in summarise_runs({"": records}, FIGURES)[""].items():
        sd = None if value.sd is None else round(value.sd, 4)
        summary[name] = {"mean": round(value.mean, 4), "sd": sd, "n": value.n}
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
    print(f"{SD_CONVENTION} over each group's seeds")
    for name, group in report["groups"].items():
        cells = [f"{k} {Spread(v['mean'], v['sd'], v['n']).cell()}" for k, v in group.items()
                 if isinstance(v, dict) and "mean" in v]  # fmt: skip
        net = group["network"]
        print(f"{name} (trained with {group.get('threads', 'unknown')} threads): {', '.join(cells)}")
        print(
            f"  {net['params']['total']:,} params, {net['mflops']} MFLOPs at {net['input_size']} px, "
            f"{net['cpu_ms_batch1']} ms at batch 1, {net['cpu_ms_per_face_batch32']} ms/face at batch 32"
        )
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()
