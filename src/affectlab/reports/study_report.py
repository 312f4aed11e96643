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
from affectlab.evaluation.cost import COST_SECTIONS
from affectlab.reports.cross_dataset import IN_DOMAIN_MARK, cross_dataset_table
from affectlab.reports.run_figures import FIGURE_NAMES
from affectlab.reports.run_groups import SD_CONVENTION, sd_caption, threads_of
from affectlab.reports.tradeoff import TradeoffPanel, plot_tradeoff, tradeoff_panels

__all__ = ["REFERENCE_STUDY", "cost_blocks", "cost_rows", "markdown_table", "write_study_report"]

#: The reference study's published test figures on the 3,999-image AffectNet set (600 test images).
REFERENCE_STUDY: dict[str, dict[str, Any]] = {
    "vgg16": {
        "accuracy": 0.285,
        "f1_weighted": 0.273,
        "cohen_kappa": 0.183,
        "auc_ovr": 0.719,
        "rmse": (0.446, 0.360),
        "corr": (0.290, 0.280),
    },
    "mobilenet_v2": {
        "accuracy": 0.320,
        "f1_weighted": 0.301,
        "cohen_kappa": 0.223,
        "auc_ovr": 0.730,
        "rmse": (0.445, 0.356),
        "corr": (0.291, 0.315),
    },
}

Block = tuple[str, Any]  # ("h2"/"h3", text) | ("p", text) | ("table", (header, rows)) | ("img", (path, alt))
TRADEOFF_FIGURE = "tradeoff.png"


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return (
            f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"
            if value["n"] > 1
            else f"{value['mean']:.{digits}f}"
        )
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _model(agg: dict[str, Any]) -> str:
    """The backbone, and with several sources the ones the model trained on (scored on the first of them)."""
    trained_on = agg.get("trained_on")
    return agg["backbone"] + (f" (trained on {' + '.join(trained_on)})" if trained_on else "")


def _classification_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for agg in summary["aggregate"]:
        if "classification.accuracy" not in agg:
            continue
        rows.append(
            [
                _model(agg),
                agg["task"],
                agg["weights"],
                *(
                    _f(agg.get(f"classification.{k}"))
                    for k in ("accuracy", "f1_weighted", "f1_macro", "cohen_kappa", "auc_ovr")
                ),
            ]
        )
    return rows


def _regression_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for agg in summary["aggregate"]:
        if "valence.rmse" not in agg:
            continue
        cells = [_model(agg), agg["task"], agg["weights"]]
        for key in ("rmse", "corr", "sagr", "ccc"):
            cells += [_f(agg.get(f"valence.{key}")), _f(agg.get(f"arousal.{key}"))]
        rows.append(cells)
    return rows


def _confidence_blocks(summary: dict[str, Any]) -> list[Block]:
    """Calibration before/after the temperature and the coverage of the conformal sets and intervals."""
    rows = []
    for agg in summary["aggregate"]:
        if not any(k.startswith("confidence.") for k in agg):
            continue
        keys = ("temperature", "before.ece", "after.ece", "after.ece_floor", "before.nll", "after.nll", "after.aurc", "sets.coverage",
                "sets.mean_size", "intervals.valence.coverage", "intervals.valence.mean_width",
                "intervals.arousal.coverage", "intervals.arousal.mean_width")  # fmt: skip
        rows.append([agg["backbone"], agg["task"], agg["weights"], *(_f(agg.get(f"confidence.{k}")) for k in keys)])
    if not rows:
        return []
    header = ["backbone", "task", "weights", "T", "ECE before", "ECE after", "ECE floor", "NLL before", "NLL after", "AURC",
              "set coverage", "set size", "V coverage", "V width", "A coverage", "A width"]  # fmt: skip
    note = (
        "Temperature and conformal sets/intervals fitted on the validation split after model selection; ECE with "
        "15 equal-width bins (ECE floor: what a perfectly calibrated model with the same probabilities would measure "
        "on as many faces); sets are adaptive prediction sets (APS) at the run's train.coverage; "
        "see docs/calibration.md."
    )
    return [("h2", "Confidence (test split)"), ("p", note), ("table", (header, rows))]


def _blocks(summary: dict[str, Any]) -> list[Block]:
    data, runs, cfg = summary["data"], summary["runs"], summary["config"]
    seeds = sorted({r["seed"] for r in runs})
    blocks: list[Block] = [
        ("h1", "affectlab study report"),
        (
            "p",
            (
                f"Data: `{data.get('path')}` ({data.get('layout')} layout), {data.get('samples')} samples; "
                f"split train/val/test = {data['counts'].get('train')}/{data['counts'].get('val')}/{data['counts'].get('test')}"
                f" (stratified, duplicate images kept in one split); excluded: {data.get('excluded') or 'none'}; "
                f"skipped bad samples: {len(data.get('skipped', []))}."
            ),
        ),
        (
            "p",
            f"Models selected on the validation split only; the test split was scored once per model. "
            f"Seeds: {', '.join(map(str, seeds))}"
            + (f" ({sd_caption(len(seeds))}, each with its own split)" if len(seeds) > 1 else "")
            + f"; trained with {threads_of(runs)} intra-op threads.",
        ),
        ("h2", "Emotion classification (test split)"),
        (
            "table",
            (
                ["backbone", "task", "weights", "accuracy", "F1 weighted", "F1 macro", "Cohen kappa", "AUC (OvR)"],
                _classification_rows(summary),
            ),
        ),
        ("h2", "Valence / arousal regression (test split)"),
        (
            "table",
            (
                [
                    "backbone",
                    "task",
                    "weights",
                    "RMSE V",
                    "RMSE A",
                    "CORR V",
                    "CORR A",
                    "SAGR V",
                    "SAGR A",
                    "CCC V",
                    "CCC A",
                ],
                _regression_rows(summary),
            ),
        ),
        *_cross_dataset_blocks(summary),
        *_confidence_blocks(summary),
        ("h2", "Reference study (published, 600 AffectNet test images)"),
        (
            "table",
            (
                ["backbone", "accuracy", "F1 weighted", "kappa", "AUC", "RMSE V/A", "CORR V/A"],
                [
                    [
                        name,
                        *(f"{r[k]:.3f}" for k in ("accuracy", "f1_weighted", "cohen_kappa", "auc_ovr")),
                        "{:.3f}/{:.3f}".format(*r["rmse"]),
                        "{:.3f}/{:.3f}".format(*r["corr"]),
                    ]
                    for name, r in REFERENCE_STUDY.items()
                ],
            ),
        ),
        ("h2", "Weights and timings"),
        (
            "table",
            (
                ["run", "weights used", "epochs (best)", "feature cache", "feature s", "train s"],
                [
                    [
                        r["name"],
                        r["weights_description"],
                        f"{r['epochs_run']} ({r['best_epoch']})",
                        "yes" if r["used_feature_cache"] else "no",
                        _f(r["feature_seconds"], 1),
                        _f(r["train_seconds"], 1),
                    ]
                    for r in runs
                ],
            ),
        ),
        (
            "p",
            (
                f"Total wall time {summary['timing']['total_seconds']:.0f} s on {summary['machine']['platform']}, "
                f"torch {summary['machine']['torch']}, {summary['machine']['threads']} threads, CUDA: {summary['machine']['cuda']}."
            ),
        ),
        *_efficiency_blocks(summary),
        *_analysis_blocks(runs),
        *_robustness_blocks(summary),
        *_scenes_blocks(summary),
        ("h2", "Settings"),
        (
            "pre",
            "\n".join(
                [
                    *(f"{section}.{k}: {v}" for section in ("model", "train") for k, v in cfg[section].items()),
                    *_machine_lines(runs),
                ]
            ),
        ),
    ]
    for run in runs:
        blocks.append(("h2", f"Run {run['name']}"))
        for key in ("curves", "confusion", "circumplex", "grid", "robustness"):
            path = Path(run["name"]) / FIGURE_NAMES[key]
            blocks.append(("img", (path, f"{run['name']} {key}")))
    return blocks


def _machine_lines(runs: list[dict[str, Any]]) -> list[str]:
    """What trained the runs and can move their figures: intra-op threads, the CPU and its instruction set
    (``run.json``'s ``machine``; "unknown" for runs made before it was recorded)."""
    lines = []
    for key in ("threads", "cpu", "cpu_capability", "gpu"):
        values = {str((run.get("machine") or {}).get(key, "unknown") or "none") for run in runs}
        lines.append(f"machine.{key}: {', '.join(sorted(values)) or 'unknown'}")
    return lines


def _cross_dataset_blocks(summary: dict[str, Any]) -> list[Block]:
    table = cross_dataset_table(summary["runs"])
    if table is None:
        return []
    header, rows, shared = table
    note = (
        f"Test accuracy of each model on every source's test split ({SD_CONVENTION} over seeds; the threads column: "
        f"the intra-op thread counts its runs trained with). {IN_DOMAIN_MARK} marks "
        "in-domain cells: the model trained on that source's training split; the other cells are data the model "
        "never saw."
    )
    if shared:
        note += (
            f" After the slash: accuracy over the {len(shared)} classes every source labels ({', '.join(shared)}), "
            "the prediction the most probable of those; the first number is the 8-class accuracy."
        )
    note += (
        " Beside each accuracy: the ECE of the calibrated probabilities and the coverage of the prediction sets on "
        "that source (mean over seeds); both are fitted on the training sources' validation faces, so off the "
        "diagonal they show how far the calibration and the coverage guarantee hold on data the model never saw."
        " The classification and regression tables above score each model on the source that selected it."
    )
    if any(name.endswith("vote CE / top-vote agreement") for name in header):
        note += (
            " A crowd-voted source (FER+) is scored by its majority vote (ties left out); its vote column gives the "
            "mean cross-entropy to the crowd's vote distributions (lower is better) and the share of faces whose "
            "prediction is a top-voted class."
        )
    return [("h2", "Cross-dataset (test splits)"), ("table", (header, rows)), ("p", note)]


def _ms(speed: dict[str, Any] | None) -> str:
    return f"{speed['batch1']['p50_ms']:.1f} / {speed['batch1']['p95_ms']:.1f}" if speed else "-"


def _fps(speed: dict[str, Any] | None) -> str:
    return f"{speed['batch32']['faces_per_s']:.1f}" if speed else "-"


def _gflops(flops: int) -> str:
    return f"{flops / 1e9:.2f}" if flops >= 1e9 else f"{flops / 1e9:.3f}"


def _efficiency_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for run in runs:
        e, m = run["efficiency"], run["metrics"]
        score = (f"acc {m['classification']['accuracy']:.3f}" if "classification" in m else "") + (
            f" CCC {_f(m['valence']['ccc'])}/{_f(m['arousal']['ccc'])}" if "valence" in m else ""
        )
        eager, ort = e["speed"].get("pytorch_eager"), e["speed"].get("onnxruntime")
        rows.append(
            [
                run["name"],
                score.strip(),
                f"{e['params']['total'] / 1e6:.2f} M ({e['params']['trainable'] / 1e6:.2f} M)",
                _f(e["checkpoint_mb"], 1),
                _f(e["onnx_mb"], 1),
                _gflops(e["flops"]),
                _ms(eager),
                _fps(eager),
                _ms(ort),
                _fps(ort),
                _f(e["export_seconds"], 1),
                _f(e["seconds"], 1),
            ]
        )
    return rows


def _measuring_note(runs: list[dict[str, Any]]) -> str:
    """Where and how the speed was measured, and how busy the machine was: timings mean little without it."""
    machine, plan = runs[0]["efficiency"]["machine"], runs[0]["efficiency"]["plan"]
    loads = [r["efficiency"]["machine"]["load_average"][0] for r in runs if r["efficiency"]["machine"]["load_average"]]
    cap = f" (stopped after {plan['max_seconds']:g} s)" if plan["max_seconds"] else ""
    return (
        f"Measured after training on the CPU, {machine['cpu']}"
        + (f" (the machine's GPU, {machine['gpu']}, was not used for these timings)" if machine["gpu"] else "")
        + f" ({machine['cpus']} CPUs; PyTorch {machine['torch_threads']} threads, ONNX Runtime "
        f"{machine['onnxruntime_threads']}), on test faces at the model's input size: {plan['warmup']} warm-up and "
        f"{plan['batch1_calls']} timed calls at batch 1{cap}, then {plan['batch_calls']} timed call(s) at batch "
        f"{plan['batch']}, per runtime. "
        + (
            f"Load average (1 min) when measured: {min(loads):.1f} to {max(loads):.1f}; other processes on the same "
            "cores slow PyTorch eager most. "
            if loads
            else ""
        )
        + "FLOPs: one forward pass of one image, counted by torch.utils.flop_counter (convolutions and matrix "
        "products, 2 per multiply-add). MB = 10^6 bytes. ORT = ONNX Runtime (CPU)."
    )


def _efficiency_blocks(summary: dict[str, Any]) -> list[Block]:
    """The size/speed/accuracy table, the machine it ran on, the trade-off figure and its sentences."""
    runs = [r for r in summary["runs"] if "efficiency" in r]
    if not runs:
        return []
    blocks: list[Block] = [
        ("h2", "Size, speed and accuracy"),
        (
            "table",
            (
                [
                    "run",
                    "test score",
                    "params (trainable)",
                    "checkpoint MB",
                    "ONNX MB",
                    "GFLOPs",
                    "eager p50 / p95 ms, batch 1",
                    "eager faces/s, batch 32",
                    "ORT p50 / p95 ms, batch 1",
                    "ORT faces/s, batch 32",
                    "ONNX export s",
                    "measuring s",
                ],
                _efficiency_rows(runs),
            ),
        ),
        ("p", _measuring_note(runs)),
    ]
    blocks += cost_blocks(summary["runs"])
    panels = tradeoff_panels(summary)
    if panels:
        blocks.append(("img", (Path(TRADEOFF_FIGURE), "accuracy and CCC against faces/s, marker area = model size")))
        blocks += [("p", f"{p.task.capitalize()}, {p.metric}: {p.sentence}") for p in panels if p.sentence]
    return blocks


def cost_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Seconds per section of each run that recorded them (``metrics.json``'s ``cost``), and the total."""
    timed = [r for r in runs if r["metrics"].get("cost")]
    sections = [name for name in COST_SECTIONS if any(f"{name}_s" in r["metrics"]["cost"] for r in timed)]
    header = ["run", *[f"{name} s" for name in sections], "total s"]
    rows = [
        [r["name"], *[_f(r["metrics"]["cost"].get(f"{name}_s"), 1) for name in sections],
         _f(r["metrics"]["cost"]["total_s"], 1)]
        for r in timed
    ]  # fmt: skip
    return header, rows


def cost_blocks(runs: list[dict[str, Any]]) -> list[Block]:
    """What each section of each run cost, and the protocol that keeps the dear ones cheap."""
    header, rows = cost_rows(runs)
    if not rows:
        return []
    named = "; ".join(f"{name}: {what}" for name, what in COST_SECTIONS.items() if f"{name} s" in header)
    note = (
        f"Wall seconds per section of each run, measured in the run's process ({named}). A study's models share "
        "what is not theirs: the pooled features of a frozen trunk (the second task of a backbone reads them, "
        "damaged faces and scene crops included, from the feature cache), the crop fit and the scenes' detections."
    )
    robust = [r["metrics"]["robustness"] for r in runs if "robustness" in r["metrics"]]
    if robust and robust[0].get("faces") is not None:
        first = robust[0]
        note += (
            f" Robustness damages {first['faces']} of the {first['of']} test faces (a fixed subset stratified by "
            f"expression){_severity_text(first)}, {'with' if first['flip'] else 'without'} the flip TTA; its "
            "shares kept carry 95% bootstrap intervals over those faces."
        )
    return [("p", "Cost per section (seconds):"), ("table", (header, rows)), ("p", note)]


def _confusion_blocks(run: dict[str, Any], c: dict[str, Any]) -> list[Block]:
    mutual = (
        "; ".join(
            f"{p['a']} → {p['b']} {p['a_to_b']} ({p['a_to_b_share']:.0%}), {p['b']} → {p['a']} "
            f"{p['b_to_a']} ({p['b_to_a_share']:.0%})"
            for p in c["mutual_confusions"]
        )
        or "none"
    )
    low = ", ".join(
        f"{r['class']} {r['recall']:.2f}" + (f" (mostly as {r['most_predicted_as']})" if r["most_predicted_as"] else "")
        for r in c["lowest_recall"]
    )
    return [
        ("h3", f"{run['name']}: what it confuses"),
        (
            "table",
            (
                ["true", "predicted as", "faces", "share of true class"],
                [[r["true"], r["predicted"], str(r["count"]), f"{r['share']:.1%}"] for r in c["top_confusions"]],
            ),
        ),
        ("p", f"Confused both ways (each direction at least {c['mutual_min_share']:.0%} of its class): {mutual}."),
        ("p", f"Lowest recall: {low}."),
        ("p", c["sentence"]),
    ]


def _va_blocks(run: dict[str, Any], v: dict[str, Any]) -> list[Block]:
    return [
        ("h3", f"{run['name']}: where the valence/arousal error lies"),
        (
            "table",
            (
                ["quadrant (true V, A)", "typical", "n", "RMSE", "RMSE V", "RMSE A", "SAGR V", "SAGR A"],
                [
                    [
                        q["quadrant"],
                        q["typical"],
                        str(q["n"]),
                        *(_f(q[k]) for k in ("rmse", "rmse_valence", "rmse_arousal", "sagr_valence", "sagr_arousal")),
                    ]
                    for q in v["quadrants"]
                ],
            ),
        ),
        ("p", f"{v['sentence']} Bias is mean predicted − mean true; CCC penalises it, Pearson's r does not."),
    ]


def _analysis_blocks(runs: list[dict[str, Any]]) -> list[Block]:
    """Per model: the top confusions and lowest-recall classes, or the V/A error by circumplex quadrant."""
    blocks: list[Block] = []
    for run in runs:
        analysis = run["metrics"].get("analysis", {})
        if "confusions" in analysis:
            blocks += _confusion_blocks(run, analysis["confusions"])
        if "va_errors" in analysis:
            blocks += _va_blocks(run, analysis["va_errors"])
    return [("h2", "What the models get wrong (test split)"), *blocks] if blocks else []


def _robustness_blocks(summary: dict[str, Any]) -> list[Block]:
    """Per model: the clean score, the mean under damage relative to clean, and each damage's three severities;
    beside them the ECE and set coverage, clean and under damage."""
    runs = [r for r in summary["runs"] if "robustness" in r["metrics"]]
    if not runs:
        return []
    metrics = [
        m
        for m in ("accuracy", "valence_ccc", "arousal_ccc")
        if any(m in r["metrics"]["robustness"]["clean"] for r in runs)
    ]
    trust = [m for m in _TRUST_NAMES if any(m in r["metrics"]["robustness"]["clean"] for r in runs)]
    header = ["run"] + [f"{m.replace('_', ' ')}: clean / damaged / relative" for m in metrics]
    header += [f"{_TRUST_NAMES[m]}: clean / damaged" for m in trust]
    rows = []
    for run in runs:
        section = run["metrics"]["robustness"]
        cells = [run["name"]]
        for m in metrics:
            if m not in section["clean"]:  # a metric the run's task does not have
                cells.append("-")
                continue
            damaged, relative = section["damaged_mean"][m], section[f"{m}_relative"]
            interval = section.get(f"{m}_relative_interval")
            spread = f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
            cells.append(f"{_f(section['clean'][m])} / {_f(damaged)} / {_f(relative, 2)}{spread}")
        for m in trust:
            cells.append(f"{_f(section['clean'].get(m))} / {_f(section['damaged_mean'].get(m))}")
        rows.append(cells)
    first = runs[0]["metrics"]["robustness"]
    damages = list(dict.fromkeys(r["damage"] for r in first["results"]))
    settings = {d: ", ".join(r["setting"] for r in first["results"] if r["damage"] == d) for d in damages}

    def detail(metric: str | None) -> tuple[list[str], list[list[str]]]:
        """Each damage's three severities per run: ``metric``, or the run's headline score when None."""
        table = []
        for damage in damages:
            cells = [damage, settings[damage]]
            for run in runs:
                section = run["metrics"]["robustness"]
                shown = metric or ("accuracy" if "accuracy" in section["clean"] else "valence_ccc")
                values = [r.get(shown) for r in section["results"] if r["damage"] == damage]
                cells.append(" / ".join(_f(v) for v in values))
            table.append(cells)
        return ["damage", "severities 1 / 2 / 3"] + [r["name"] for r in runs], table

    aggregate = [
        f"{a['backbone']} {a['task']}: {_f(a['robustness.accuracy_relative'], 2)} of clean accuracy"
        for a in summary["aggregate"]
        if "robustness.accuracy_relative" in a
    ]
    blocks: list[Block] = [
        ("h2", "Robustness: the test split under camera damage"),
        (
            "p",
            (
                f"Each model scored again on its test split under {len(damages)} kinds of camera damage at three "
                f"severities (generated at run time, seed {first['seed']}; docs/robustness.md says what each is)"
                + _subset_text(first)
                + ". Damaged = the mean over all damages and severities; relative = damaged / clean, with its 95% "
                "bootstrap interval over the faces in brackets where the run gives one. ECE is that of the "
                "probabilities users get (after the temperature); set coverage is the share of faces whose true "
                "emotion is in their conformal prediction set, interval coverage the share of true valence or "
                "arousal inside the interval (the target, train.coverage, holds on faces like the validation "
                "split's)."
            ),
        ),
        ("table", (header, rows)),
        ("p", "Per damage and severity (accuracy, or valence CCC for regression-only models):"),
        ("table", detail(None)),
    ]
    for m in trust:
        blocks += [("p", f"{_TRUST_NAMES[m]} per damage and severity:"), ("table", detail(m))]
    return [
        *blocks,
        *[("p", f"{run['name']}: {run['metrics']['robustness']['sentence']}") for run in runs],
        *(
            [("p", "Mean over seeds: " + "; ".join(aggregate) + ".")]
            if len(summary["runs"]) > len(summary["aggregate"])
            else []
        ),
        ("p", "The figure of each run (robustness.png) plots the score against severity, one line per damage."),
    ]


def _subset_text(section: dict[str, Any]) -> str:
    """Which faces were damaged: every one (runs before issue 34), or a fixed stratified subset."""
    if section.get("faces") is None:
        return ""
    which = "every face" if section["faces"] >= section["of"] else f"a fixed subset of {section['faces']} faces"
    return (
        f", on {which} of the {section['of']} (stratified by expression){_severity_text(section)}, "
        f"{'with' if section['flip'] else 'without'} the flip TTA; clean = the same faces through the same pass"
    )


def _severity_text(section: dict[str, Any]) -> str:
    """How the severities were dealt: each face at one per damage (a third of each class per severity), or at
    all three (runs before the option, and ``robustness_severities: every``)."""
    if section.get("severities", "every") == "every":
        return ""
    return ", each face at one severity per damage (a third of the faces and of each class per severity)"


_TRUST_NAMES = {
    "ece": "ECE",
    "set_coverage": "set coverage",
    "valence_coverage": "V interval coverage",
    "arousal_coverage": "A interval coverage",
}


def _scenes_blocks(summary: dict[str, Any]) -> list[Block]:
    """Per model: the test faces pasted into generated scenes, through the default detector, end to end."""
    runs = [r for r in summary["runs"] if "faces_in_scenes" in r["metrics"]]
    if not runs:
        return []
    header = ["run", "faces found", "false boxes", "accuracy found / end to end", "of clean",
              "CCC V/A found", "CCC V/A end to end", "ECE found", "set coverage found"]  # fmt: skip
    rows = []
    for run in runs:
        s = run["metrics"]["faces_in_scenes"]
        found, end = s["found_faces"], s["end_to_end"]
        rows.append(
            [
                run["name"],
                f"{s['found']} / {s['faces']}",
                str(s["false_boxes"]),
                f"{_f(found.get('accuracy'))} / {_f(end.get('accuracy'))}" if "accuracy" in end else "-",
                _f(s.get("accuracy_ratio"), 2),
                f"{_f(found.get('valence_ccc'))} / {_f(found.get('arousal_ccc'))}" if "valence_ccc" in end else "-",
                f"{_f(end.get('valence_ccc'))} / {_f(end.get('arousal_ccc'))}" if "valence_ccc" in end else "-",
                _f(found.get("ece")),
                _f(found.get("set_coverage")),
            ]
        )
    first = runs[0]["metrics"]["faces_in_scenes"]
    note = (
        f"Each model's test faces pasted into generated scenes ({first['scenes_spec']}; seed {first['seed']}, "
        f"never stored) and run end to end as affectlab predict runs them: the {first['detector']} detector, the "
        f"model's crop (margin {first['margin']:g}), its flip TTA and calibration. A detection matches a pasted face "
        f"at IoU >= {first['min_iou']:g} (one to one); end to end, a missed face counts as wrong (and as V = A = 0 "
        "for the CCC); 'of clean' = end-to-end accuracy / the clean-crop test accuracy."
    )
    return [("h2", "Faces in scenes: the test faces through the detector"), ("p", note), ("table", (header, rows))]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """One GitHub-markdown table, shared by the study report and the benchmark scripts so they print alike."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows] or ["| (none) |"]
    return "\n".join(lines)


def _markdown(blocks: list[Block], root: Path) -> str:
    lines: list[str] = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
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
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>affectlab study report</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}",
        # A wide table (many metrics, long run names) scrolls inside its own box instead of overflowing the page.
        ".table-box{max-width:100%;overflow-x:auto;margin:1em 0}",
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}",
        "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.5em 0}",
        "pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>",
    ]
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{html.escape(value)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(value).replace('`', '')}</p>")
        elif kind == "pre":
            parts.append(f"<pre>{html.escape(value)}</pre>")
        elif kind == "table":
            header, rows = value
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            parts.append(f"<div class='table-box'><table><tr>{head}</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table></div>")
        elif kind == "img" and (root / value[0]).is_file():
            data = base64.b64encode((root / value[0]).read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(value[1])}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_study_report(out_dir: str | Path, summary: dict[str, Any]) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    panels: list[TradeoffPanel] = tradeoff_panels(summary)
    if panels:
        plot_tradeoff(panels, out_dir / TRADEOFF_FIGURE)
    blocks = _blocks(summary)
    return (
        write_text(out_dir / "report.md", _markdown(blocks, out_dir)),
        write_text(out_dir / "report.html", _html(blocks, out_dir)),
    )
