"""The ``robustness`` section of metrics.json: the scored split again under each camera damage at three severities.

Users feed webcams and phone photos, not clean dataset crops; this says how much of the clean score a model keeps
under each damage of ``affectlab.data.damage`` (generated at run time from a fixed seed, never stored), and the
mean over all damages and severities relative to clean, the one number a study compares.

Beside each score it reports how far the model's confidence still holds there (``trust.shift_metrics``): the ECE of
the probabilities users get (calibrated where the model has a temperature) and the empirical coverage of the
conformal prediction sets and V/A intervals, which are guaranteed only on faces like the validation split's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from affectlab.data.damage import DAMAGES, damaged
from affectlab.data.samples import FaceSplit
from affectlab.data.transforms import Preprocess
from affectlab.evaluation.metrics import ccc
from affectlab.evaluation.trust import SHIFT_METRICS, clean_shift_metrics, shift_metrics
from affectlab.models.affect_model import AffectModel
from affectlab.models.meta import Calibration
from affectlab.models.outputs import Outputs, predict_images

__all__ = ["ROBUSTNESS_METRICS", "robustness_section"]

#: What is scored under damage: accuracy for emotion, CCC for valence and arousal.
ROBUSTNESS_METRICS = ("accuracy", "valence_ccc", "arousal_ccc")


def _scores(outputs: Outputs, split: FaceSplit, metrics: tuple[str, ...]) -> dict[str, float | None]:
    scores: dict[str, float | None] = {}
    if "accuracy" in metrics:
        scores["accuracy"] = float(np.mean(outputs["probs"].argmax(1) == split.expression))
    if "valence_ccc" in metrics:
        scores["valence_ccc"] = ccc(split.va[:, 0], outputs["va"][:, 0])
        scores["arousal_ccc"] = ccc(split.va[:, 1], outputs["va"][:, 1])
    return scores


def _clean_scores(document: dict[str, Any]) -> dict[str, float | None]:
    clean: dict[str, float | None] = {}
    if "classification" in document:
        clean["accuracy"] = document["classification"]["accuracy"]
    if "valence" in document:
        clean["valence_ccc"], clean["arousal_ccc"] = document["valence"]["ccc"], document["arousal"]["ccc"]
    return clean


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _relative(damaged_mean: float | None, clean: float | None) -> float | None:
    return None if damaged_mean is None or clean is None or clean <= 0 else damaged_mean / clean


def robustness_section(
    model: AffectModel,
    preprocess: Preprocess,
    split: FaceSplit,
    document: dict[str, Any],
    tta_flip: bool,
    batch_size: int = 64,
    seed: int = 0,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """Score ``split`` under every damage x severity, next to the clean scores of its metrics ``document``.

    The section lists each result and, per metric, the mean over all damages and severities and that mean
    relative to clean (``accuracy_relative`` ...). Each result also has the ``trust.SHIFT_METRICS`` of the outputs
    with ``calibration`` (the model's), next to the clean values of the document's ``confidence`` section. The
    images are damaged with ``seed``, so a rerun of the same model gives the same numbers.
    """
    clean: dict[str, float | None] = {**_clean_scores(document)}
    metrics = tuple(clean)
    labels = split.expression if "accuracy" in clean else None
    va = split.va if "valence_ccc" in clean else None
    clean |= clean_shift_metrics(document.get("confidence"))
    results: list[dict[str, Any]] = []
    for damage in DAMAGES:
        for severity in (1, 2, 3):
            images = damaged(split.images, damage, severity, seed)
            outputs = predict_images(model, images, preprocess, batch_size, tta_flip=tta_flip, calibration=calibration)
            results.append(
                {
                    "damage": damage.name,
                    "severity": severity,
                    "setting": damage.setting(severity),
                    **_scores(outputs, split, metrics),
                    **shift_metrics(outputs, labels, va),
                }
            )
    section: dict[str, Any] = {"seed": seed, "clean": clean, "results": results, "damaged_mean": {}}
    for metric in metrics:
        mean = _mean([r[metric] for r in results])
        section["damaged_mean"][metric] = mean
        section[f"{metric}_relative"] = _relative(mean, clean[metric])
    for metric in SHIFT_METRICS:
        if any(metric in r for r in results):
            section["damaged_mean"][metric] = _mean([r.get(metric) for r in results])
    section["sentence"] = _sentence(section, metrics[0])
    return section


def _sentence(section: dict[str, Any], metric: str) -> str:
    """The headline: what share of the clean score survives, and the damage that hurts most."""
    relative = section[f"{metric}_relative"]
    scored = [r for r in section["results"] if r[metric] is not None]
    if relative is None or not scored:
        return f"{metric.replace('_', ' ')}: no clean score to compare with."
    worst = min(scored, key=lambda r: r[metric])
    return (
        f"Under {len({r['damage'] for r in scored})} damages x 3 severities the model keeps {relative:.2f} of its "
        f"clean {metric.replace('_', ' ')} on average; worst: {worst['damage']} at {worst['setting']} "
        f"({worst[metric]:.3f} against {section['clean'][metric]:.3f} clean)." + _confidence_sentence(section)
    )


def _confidence_sentence(section: dict[str, Any]) -> str:
    """How far the confidence holds: ECE and set coverage, clean against the mean under damage, and the damage
    whose sets cover least."""
    clean, mean = section["clean"], section["damaged_mean"]
    parts = [
        f"{name} {clean[key]:.3f} clean, {mean[key]:.3f} damaged"
        for name, key in (
            ("ECE", "ece"),
            ("set coverage", "set_coverage"),
            ("valence interval coverage", "valence_coverage"),
            ("arousal interval coverage", "arousal_coverage"),
        )
        if clean.get(key) is not None and mean.get(key) is not None
    ]
    if not parts:
        return ""
    text = " Confidence: " + "; ".join(parts)
    covered = [r for r in section["results"] if r.get("set_coverage") is not None]
    if covered:
        worst = min(covered, key=lambda r: r["set_coverage"])
        text += f" (lowest coverage: {worst['damage']} at {worst['setting']}, {worst['set_coverage']:.3f})"
    return text + "."
