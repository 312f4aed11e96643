"""The model card of a served model: what it predicts, from what input, trained on what, and how well it scored.

Task, classes, input size and the network come from the model itself (the checkpoint's or the ONNX file's metadata,
``ModelInfo``). The training data and the test metrics live in the run folder next to the model (``run.json``,
``metrics.json``, written by ``affectlab train`` and for each model of a study); a model file on its own has no card
beyond its metadata, and the card says so rather than guessing, unless the file records them itself (the bundled
model: ``ModelMeta.card``, written by ``tools/build_bundled.py``). Paths are shown as file names only, as in every
response of the service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from affectlab.runtime.backends import ModelInfo

__all__ = ["card_metrics", "model_card", "model_card_markdown"]

_SECTIONS = ("classification", "valence", "arousal")


def model_card(info: ModelInfo) -> dict[str, Any]:
    """The card as plain values: ``model`` (from the metadata), ``data`` and ``test_metrics`` (None when unknown)."""
    network = info.extra.get("model", {})
    card: dict[str, Any] = {
        "task": info.task,
        "classes": list(info.class_names) if info.task != "regression" else [],
        "valence_arousal": info.task != "classification",
        "input_size": info.preprocess.input_size,
        "backbone": network.get("backbone"),
        "weights": Path(str(network.get("weights", ""))).name or None,
        "runtime": info.runtime,
        "quantization": info.extra.get("quantization"),
        "model_file": Path(info.source).name if info.source else None,
        "data": None,
        "test_metrics": None,
    }
    folder = _run_folder(info.source)
    if folder is not None:
        data = _training_data(folder)
        if data is not None:
            card["data"] = {k: Path(v).name if k == "path" and isinstance(v, str) else v
                            for k, v in data.items() if not isinstance(v, (dict, list))}  # fmt: skip
            if isinstance(data.get("sources"), dict):  # several sources: name each, not the last path's folder
                card["data"]["path"] = ", ".join(
                    Path(str(s.get("path", name))).name for name, s in data["sources"].items()
                )
            if isinstance(data.get("counts"), dict):
                card["data"]["split"] = " / ".join(f"{k} {v}" for k, v in data["counts"].items())
        metrics = _read_json(folder / "metrics.json")
        if isinstance(metrics, dict):
            card["test_metrics"] = card_metrics(metrics)
    for key, recorded in (("data", "training_data"), ("test_metrics", "test_metrics")):
        if card[key] is None and isinstance(info.extra.get(recorded), dict):  # recorded in the model file itself
            card[key] = info.extra[recorded]
    return card


def card_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """A ``metrics.json`` as the card shows it: split, n and each section's top-level numbers."""
    return {
        "split": metrics.get("split"),
        "n": metrics.get("n"),
        **{name: _numbers(metrics[name]) for name in _SECTIONS if isinstance(metrics.get(name), dict)},
    }


def model_card_markdown(info: ModelInfo) -> str:
    """The card as Markdown for the page."""
    card = model_card(info)
    lines = [
        "| Model | |",
        "|---|---|",
        f"| Task | {card['task']} |",
        f"| Classes | {', '.join(card['classes']) or '(none: valence/arousal only)'} |",
        f"| Valence/arousal | {'yes' if card['valence_arousal'] else 'no'} |",
        f"| Input size | {card['input_size']} x {card['input_size']} px |",
        f"| Network | {card['backbone'] or '?'} (weights: {card['weights'] or '?'}) |",
        f"| Runtime | {card['runtime']}{', ' + str(card['quantization']) if card['quantization'] else ''} |",
        f"| Model file | {card['model_file'] or '?'} |",
        f"| Confidence | {_calibration_line(info)} |",
    ]
    data = card["data"]
    lines.append(
        "| Training data | "
        + (", ".join(f"{k}: {v}" for k, v in data.items()) if data else "not recorded (no run.json beside the model)")
        + " |"
    )
    metrics = card["test_metrics"]
    if not metrics:
        lines += ["", "**Test metrics:** not recorded (no metrics.json beside the model)."]
        return "\n".join(lines)
    lines += [
        "",
        f"**Test metrics** ({metrics.get('split')} split, n = {metrics.get('n')}):",
        "",
        "| | metric | value |",
        "|---|---|---|",
    ]
    for section in _SECTIONS:
        for key, value in (metrics.get(section) or {}).items():
            lines.append(f"| {section} | {key} | {value:.4g} |")
    return "\n".join(lines)


def _training_data(folder: Path) -> dict[str, Any] | None:
    """What the run was trained on: its ``run.json``'s ``data``, else (a model of a study made before each study
    model got its ``run.json``) the data of the study around it, whose ``summary.json`` lists the run."""
    run = _read_json(folder / "run.json")
    if isinstance(run, dict) and isinstance(run.get("data"), dict):
        return run["data"]  # type: ignore[no-any-return]
    study = _read_json(folder.parent / "summary.json")
    if not isinstance(study, dict) or not isinstance(study.get("data"), dict):
        return None
    listed = any(isinstance(r, dict) and r.get("name") == folder.name for r in study.get("runs") or [])
    return study["data"] if listed else None  # type: ignore[no-any-return]


def _calibration_line(info: ModelInfo) -> str:
    cal = info.calibration
    if cal is None or (cal.temperature is None and cal.coverage is None):
        return "raw softmax (not calibrated)"
    parts = [] if cal.temperature is None else [f"temperature {cal.temperature:.3f}"]
    if cal.coverage is not None and (cal.set_threshold is not None or cal.va_halfwidth is not None):
        parts.append(f"{cal.coverage:.0%} prediction sets and V/A intervals")
    return ", ".join(parts) + f", fitted on {cal.n} validation faces (see docs/calibration.md)"


def _run_folder(source: str) -> Path | None:
    if not source:
        return None
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    return folder if folder.is_dir() else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _numbers(section: dict[str, Any]) -> dict[str, float]:
    """The section's top-level numbers (accuracy, macro F1, CCC, RMSE ...), not its per-class tables."""
    return {k: float(v) for k, v in section.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
