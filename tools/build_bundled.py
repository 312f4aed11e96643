"""Turn a trained run into the bundled model file and its model card.

Usage::

    affectlab train --recipe bundled --out runs/bundled     # the recipe names its data sources
    python tools/build_bundled.py runs/bundled --write-registry

Writes ``src/affectlab/models/bundled/affectlab-base.pt`` (an affectlab checkpoint with half-precision weights,
at most 12 MB, the project's limit for shipped weights, loaded back into float32 by the ordinary checkpoint loader) and ``MODEL_CARD.md`` beside it: the
data with counts and licences, the test metrics of each source's held-out split (read from the run's
``metrics.json``), the speed measured here, and the known limits. It checks that the half-precision file predicts
what the run's float32 model does (probabilities and valence/arousal within 1e-2 on seeded random crops), prints
the file's SHA-256 and size, and with ``--write-registry`` writes them into ``affectlab/models/registry.py``
(``BASE_SHA256``, ``BASE_SIZE``), which the loader checks the file against. ``--out-dir`` writes elsewhere (a
test, or a trial build); an existing file is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from affectlab.atomic import atomic_write
from affectlab.errors import AffectlabError
from affectlab.export.model_card import card_metrics
from affectlab.models.checkpoint import checkpoint_bytes, load_checkpoint
from affectlab.models.outputs import predict_images
from affectlab.models.registry import BUNDLED_DIR, DEFAULT_MODEL

MAX_BYTES = 12 * 10**6
#: Largest |fp16 file - fp32 run| difference accepted, in probability and in valence/arousal.
TOLERANCE = 1e-2
REGISTRY = ROOT / "src" / "affectlab" / "models" / "registry.py"
#: What is known about each dataset, by a word in its source name: full name, citation, licence.
DATASETS = {
    "affectnet": (
        "AffectNet",
        (
            "Mollahosseini, Hasani and Mahoor, 'AffectNet: A Database for Facial Expression, Valence, and Arousal "
            "Computing in the Wild', IEEE Transactions on Affective Computing, 2017"
        ),
        "AffectNet licence agreement: non-commercial research and education only",
    ),
    "ferplus": (
        "FER+",
        (
            "Barsoum, Zhang, Canton Ferrer and Zhang, 'Training Deep Networks for Facial Expression Recognition with "
            "Crowd-Sourced Label Distribution', ICMI 2016 (labels), on FER-2013's faces (Goodfellow et al., ICONIP 2013)"
        ),
        "labels MIT (FER+); images FER-2013: research use only, not for commercial use",
    ),
    "fer2013": (
        "FER-2013",
        (
            "Goodfellow et al., 'Challenges in Representation Learning: A report on three machine learning contests', "
            "ICONIP 2013 (the ICML 2013 Kaggle challenge)"
        ),
        "released for the ICML 2013 challenge; research use only, not for commercial use",
    ),
}
UNKNOWN_DATA = ("(unknown dataset)", "(none recorded)", "unknown: check this dataset's terms before using the model")


def build(
    run: Path, out_dir: Path = BUNDLED_DIR, name: str = DEFAULT_MODEL, overwrite: bool = False, speed: bool = True
) -> dict[str, Any]:
    """Write ``out_dir/NAME.pt`` and ``out_dir/MODEL_CARD.md`` from ``run``; return what was written and measured."""
    model, meta = load_checkpoint(run)
    if meta.trained_on_demo:
        raise AffectlabError(f"{run}: trained on the synthetic demo faces; the bundled model must learn real faces")
    run_info, metrics = _read_json(run / "run.json"), _read_json(run / "metrics.json")
    sources = _sources(run_info)
    training_data = {
        "path": ", ".join(s["name"] for s in sources),
        "samples": run_info.get("data", {}).get("samples"),
        "split": " / ".join(f"{k} {v}" for k, v in (run_info.get("data", {}).get("counts") or {}).items()),
        "licence": "; ".join(f"{s['title']}: {s['licence']}" for s in sources),
    }
    meta = dataclasses.replace(
        meta,
        extra={
            **meta.extra,
            "demo_data": False,
            "bundled": name,
            "training_data": training_data,
            "test_metrics": card_metrics(metrics),
        },
    )
    data = checkpoint_bytes(model, meta, half=True)
    if len(data) > MAX_BYTES:
        raise AffectlabError(f"{run}: the bundled file would be {len(data) / 1e6:.1f} MB; the limit is 12 MB")
    out_dir = Path(out_dir)
    target, card_path = out_dir / f"{name}.pt", out_dir / "MODEL_CARD.md"
    for path in (target, card_path):
        if path.exists() and not overwrite:
            raise AffectlabError(f"{path}: exists; pass --overwrite to replace it")
    atomic_write(target, lambda p: p.write_bytes(data))
    difference = _difference(model, target)
    if max(difference.values()) >= TOLERANCE:
        target.unlink()
        raise AffectlabError(f"{target}: half precision changes the outputs too much ({difference}); not written")
    record = {
        "name": name,
        "file": str(target),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "difference_from_fp32": difference,
        "speed": _speed(target) if speed else None,
    }
    card = model_card(name, run, run_info, metrics, sources, record, meta.preprocess.input_size)
    atomic_write(card_path, lambda p: p.write_text(card, encoding="utf-8"))
    return record


def write_registry(sha256: str, size: int, registry: Path = REGISTRY) -> None:
    """Put the built file's hash and size into the registry's ``BASE_SHA256`` and ``BASE_SIZE`` lines."""
    text = registry.read_text(encoding="utf-8")
    text, n_hash = re.subn(r'^BASE_SHA256 = "[0-9a-f]*"$', f'BASE_SHA256 = "{sha256}"', text, flags=re.MULTILINE)
    text, n_size = re.subn(r"^BASE_SIZE = \d+$", f"BASE_SIZE = {size}", text, flags=re.MULTILINE)
    if (n_hash, n_size) != (1, 1):
        raise AffectlabError(f"{registry}: no BASE_SHA256 / BASE_SIZE line to update")
    atomic_write(registry, lambda p: p.write_text(text, encoding="utf-8"))


def model_card(
    name: str,
    run: Path,
    run_info: dict[str, Any],
    metrics: dict[str, Any],
    sources: list[dict[str, Any]],
    record: dict[str, Any],
    input_size: int,
) -> str:
    titles = [s["title"] for s in sources]
    with_va = [s["name"] for s in sources if s.get("valence_arousal")]
    per_source = metrics.get("sources") or {metrics.get("source", "test"): metrics}
    lines = [
        f"# Model card: {name}",
        "",
        (
            f"The model affectlab uses when none is given (`affectlab predict photo.jpg`, `affectlab.load()`). "
            f"{run_info.get('backbone', '?')} ({run_info.get('weights_description', run_info.get('weights', '?'))}), "
            f"{run_info.get('task', '?')}: 8 expression classes and valence/arousal from one {input_size} px face crop. "
            f"Weights stored in half precision ({record['size'] / 2**20:.1f} MB), loaded as float32."
        ),
        "",
        (
            f"**Licence: non-commercial research use only.** The model learnt from {' and '.join(titles)}, whose terms "
            "allow non-commercial research only; so do this model's. affectlab's code is Apache-2.0; this file is not."
        ),
        "",
        "## Training data",
        "",
        "| Source | Dataset | Faces (train / val / test) | Labels | Licence |",
        "|---|---|---|---|---|",
    ]
    for s in sources:
        counts = s.get("counts") or {}
        labels = f"{len(s.get('classes') or [])} classes" + (" + V/A" if s.get("valence_arousal") else "")
        if s.get("targets") == "votes":
            labels += ", trained on its 10 crowd votes per face"
        if s.get("per_epoch"):
            labels += f", {s['per_epoch']:,} faces drawn per epoch"
        split = " / ".join(str(counts.get(k, "?")) for k in ("train", "val", "test"))
        lines.append(f"| {s['name']} | {s['title']} | {s.get('samples', '?')} ({split}) | {labels} | {s['licence']} |")
    lines += ["", *[f"- {s['title']}: {s['citation']}." for s in sources]]
    lines += [
        "",
        (
            "Each source is split once (seeded, stratified) into train, validation and test; the model trains on the "
            "train splits, is selected and calibrated on validation, and is scored once on each source's test split."
        ),
        "",
        "## Test metrics (held-out test split of each source)",
        "",
        "| Source | n | accuracy | macro F1 | valence CCC | arousal CCC |",
        "|---|---|---|---|---|---|",
    ]
    for source, m in per_source.items():
        lines.append(
            f"| {source} | {m.get('n', '?')} | {_get(m, 'classification', 'accuracy')} | "
            f"{_get(m, 'classification', 'f1_macro')} | {_get(m, 'valence', 'ccc')} | {_get(m, 'arousal', 'ccc')} |"
        )
    for source, m in per_source.items():
        votes = m.get("votes") or {}
        if votes.get("n_majority") is not None:
            lines += [
                "",
                (
                    f"{source} is scored by its crowd's majority vote (FER+'s protocol: {votes['n_majority']} of "
                    f"{votes.get('n', '?')} faces have one; ties, unknown and not-a-face are left out); against all "
                    f"the votes, cross-entropy {votes.get('vote_cross_entropy', float('nan')):.3f} and top-vote "
                    f"agreement {votes.get('top_vote_agreement', float('nan')):.3f}."
                ),
            ]
    lines += [
        "",
        (
            f"Valence/arousal are learnt and scored on {', '.join(with_va) or 'no source'} only ('-': the source has "
            "no V/A labels); each source is scored on the classes it has (Labels above). From the run's `metrics.json`."
        ),
    ]
    confidence = metrics.get("confidence") or {}
    if confidence.get("temperature") is not None:
        lines += [
            "",
            (
                f"Confidence is calibrated (temperature {confidence['temperature']:.3f}, fitted on "
                f"{confidence.get('calibration_n', '?')} validation faces), with "
                f"{confidence.get('target_coverage', 0):.0%} conformal prediction sets and V/A intervals."
            ),
        ]
    speed = record.get("speed")
    lines += ["", "## Speed", ""]
    if speed:
        batch1, batched = speed["speed"]["batch1"], next(v for k, v in speed["speed"].items() if k != "batch1")
        machine = speed["machine"]
        lines.append(
            f"PyTorch on {machine.get('cpu') or 'this CPU'} ({machine.get('torch_threads')} threads, load "
            f"{machine.get('load_average')}): {batch1['p50_ms']} ms per face at batch 1 (p50), "
            f"{batched['faces_per_s']} faces/s at batch {speed['batch']}; face detection comes on top. "
            "`affectlab export affectlab-base` gives an ONNX file that ONNX Runtime runs faster on a CPU."
        )
    else:
        lines.append("Not measured for this build.")
    difference = record["difference_from_fp32"]
    lines += [
        "",
        "## Known limits",
        "",
        (
            "- It labels the expression a face shows, not what the person feels; it is not fit for decisions about people "
            "(hiring, schooling, policing, health)."
        ),
        (
            f"- Small training data: {', '.join(s['name'] for s in sources)}. Expect lower accuracy than the test "
            "figures on faces unlike these datasets' (lighting, age, ethnicity, pose, occlusion); the datasets "
            "come from web images and share their biases."
        ),
        (
            "- Frontal and near-frontal faces, found by the face detector and cropped as in training; profiles, very "
            "small faces (below about 40 px) and blurred frames are labelled unreliably."
        ),
        f"- Measured on {sources[0]['name']}'s test split: {_confusion_sentence(metrics, sources[0]['name'])}",
        *_shift_lines(metrics, sources[0]["name"]),
        (
            f"- Half-precision weights change probabilities by at most {difference['probs']:.1e} and valence/arousal "
            f"by at most {difference['va']:.1e} from the trained float32 model (seeded random crops)."
        ),
        "",
        "## Rebuild",
        "",
        "```bash",
        *([f"# the run's command: {run_info['command']}"] if run_info.get("command") else []),
        f"affectlab train --recipe bundled --seed {run_info.get('seed', 0)} --out runs/bundled",
        "python tools/build_bundled.py runs/bundled --write-registry --overwrite",
        "```",
        "",
        (
            f"Built from `{run.name}` (seed {run_info.get('seed', '?')}). "
            f"SHA-256 `{record['sha256']}`, {record['size']} bytes."
        ),
        "",
    ]
    return "\n".join(lines)


def _sources(run_info: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's data sources (one for a single dataset), each with what is known about its dataset."""
    data = run_info.get("data") or {}
    found = data.get("sources") or {Path(str(data.get("path", "data"))).name: data}
    sources = []
    for source_name, values in found.items():
        key = next((k for k in DATASETS if k in source_name.lower().replace("-", "")), None)
        title, citation, licence = DATASETS[key] if key else UNKNOWN_DATA
        sources.append({**values, "name": source_name, "title": title, "citation": citation, "licence": licence})
    return sources


def _difference(model: Any, path: Path) -> dict[str, float]:
    """Largest |file - model| over seeded random crops: the half-precision weights against the float32 ones."""
    reloaded, meta = load_checkpoint(path)
    size = meta.preprocess.input_size
    crops = np.random.default_rng(0).integers(0, 256, (32, size, size, 3), dtype=np.uint8)
    before = predict_images(model, crops, meta.preprocess, 32, meta.tta_flip, calibration=meta.calibration)
    after = predict_images(reloaded, crops, meta.preprocess, 32, meta.tta_flip, calibration=meta.calibration)
    return {k: float(np.abs(before[k] - after[k]).max()) for k in ("probs", "va") if k in before}


def _speed(path: Path) -> dict[str, Any]:
    from affectlab.evaluation.efficiency import SpeedPlan, machine_info, measure_speed
    from affectlab.runtime.backends import TorchBackend

    backend = TorchBackend(path)
    plan = SpeedPlan()
    size = backend.info.preprocess.input_size
    crops = np.random.default_rng(0).integers(0, 256, (plan.batch, size, size, 3), dtype=np.uint8)
    return {"speed": measure_speed(backend, crops, plan), "machine": machine_info(), "batch": plan.batch}


def _get(metrics: dict[str, Any], section: str, key: str) -> str:
    value = (metrics.get(section) or {}).get(key)
    return "-" if value is None else f"{value:.3f}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AffectlabError(f"{path}: cannot read it ({exc}); give a run folder written by affectlab train") from None
    if not isinstance(values, dict):
        raise AffectlabError(f"{path}: not a run's JSON record")
    return values


def _shift_lines(metrics: dict[str, Any], source: str) -> list[str]:
    """What the model keeps of its accuracy on faces in scenes and under camera damage, where the run measured it:
    the figures users meet on their own photos, beside the clean test score."""
    scenes = (metrics.get("faces_in_scenes") or {}).get("accuracy_ratio")
    damage = (metrics.get("robustness") or {}).get("accuracy_relative")
    parts = []
    if scenes is not None:
        parts.append(f"{scenes:.2f} when they are pasted into generated scenes at 48-200 px and found by the detector")
    if damage is not None:
        parts.append(f"{damage:.2f} under camera damage (mean of 9 damages x 3 severities)")
    if not parts:
        return []
    return [f"- On {source}'s test faces it keeps, of its clean accuracy, " + ", and ".join(parts) + "."]


def _confusion_sentence(metrics: dict[str, Any], source: str) -> str:
    """The run's own reading of its confusion matrix, so the card's weak classes are measured, not assumed."""
    scored = (metrics.get("sources") or {}).get(source) or metrics
    return str(
        ((scored.get("analysis") or {}).get("confusions") or {}).get("sentence")
        or "no confusion analysis in metrics.json."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run folder written by affectlab train")
    parser.add_argument("--out-dir", type=Path, default=BUNDLED_DIR, help=f"where to write (default {BUNDLED_DIR})")
    parser.add_argument("--name", default=DEFAULT_MODEL, help=f"file name without .pt (default {DEFAULT_MODEL})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file and card")
    parser.add_argument("--no-speed", action="store_true", help="do not time the model for the card")
    parser.add_argument("--write-registry", action="store_true", help="write the hash and size into the registry")
    args = parser.parse_args(argv)
    try:
        record = build(args.run, args.out_dir, args.name, args.overwrite, speed=not args.no_speed)
        if args.write_registry:
            write_registry(record["sha256"], record["size"])
    except AffectlabError as exc:
        print(f"build_bundled: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {record['file']} ({record['size'] / 2**20:.2f} MB) and MODEL_CARD.md beside it")
    print(f"fp16 vs fp32: max |probability| difference {record['difference_from_fp32']['probs']:.2e}")
    if "va" in record["difference_from_fp32"]:
        print(f"fp16 vs fp32: max |valence/arousal| difference {record['difference_from_fp32']['va']:.2e}")
    print("registry lines (src/affectlab/models/registry.py):")
    print(f'BASE_SHA256 = "{record["sha256"]}"')
    print(f"BASE_SIZE = {record['size']}")
    if args.write_registry:
        print(f"written into {REGISTRY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
