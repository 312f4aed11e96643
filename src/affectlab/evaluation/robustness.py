"""The ``robustness`` section of metrics.json: the scored split again under each camera damage at three severities.

Users feed webcams and phone photos, not clean dataset crops; this says how much of the clean score a model keeps
under each damage of ``affectlab.data.damage`` (generated at run time from a fixed seed, never stored), and the
mean over all damages and severities relative to clean, the one number a study compares.

Beside each score it reports how far the model's confidence still holds there (``trust.shift_metrics``): the ECE of
the probabilities users get (calibrated where the model has a temperature) and the empirical coverage of the
conformal prediction sets and V/A intervals, which are guaranteed only on faces like the validation split's.

Cheap by design (issue 34): the 27 damaged passes cost 27 times a clean pass, three times the training of a frozen
VGG16 when every test face was damaged and flipped. So the damage is applied to a fixed subset of the scored faces
(``faces``, default ``SUBSET_FACES``), drawn once from ``seed`` and stratified by expression so that it holds each
class in the split's proportions; the clean score it is compared with is that of the same faces through the same
pass (paired), and the share kept comes with its 95% bootstrap interval over those faces (``BOOTSTRAP`` draws).
Damaged faces are scored without the flip TTA (``flip=False``) unless asked: the flip moves the share kept by
less than its interval (docs/robustness.md gives the measurement) and doubles the cost. ``faces=0`` and
``flip=tta_flip`` give the protocol of releases before issue 34 (every face, the model's flip).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from affectlab.data.damage import DAMAGES, Damage, damaged
from affectlab.data.samples import FaceArray, FaceSplit
from affectlab.data.transforms import Preprocess
from affectlab.evaluation.metrics import ccc
from affectlab.evaluation.trust import SHIFT_METRICS, shift_metrics
from affectlab.models.affect_model import AffectModel
from affectlab.models.meta import Calibration
from affectlab.models.outputs import Outputs, RawOutputs, raw_images, to_outputs

__all__ = [
    "BOOTSTRAP",
    "ROBUSTNESS_METRICS",
    "SUBSET_FACES",
    "Scorer",
    "robustness_section",
    "robustness_subset",
    "subset_digest",
]

#: What is scored under damage: accuracy for emotion, CCC for valence and arousal.
ROBUSTNESS_METRICS = ("accuracy", "valence_ccc", "arousal_ccc")
#: Faces damaged by default: enough for the share kept to within about +-0.05 (95%), a quarter of a 600-face split.
SUBSET_FACES = 150
#: Bootstrap draws (over the subset's faces) for the interval of each share kept.
BOOTSTRAP = 1000
#: The heads of some faces: ``(indices into the split, their uint8 NHWC images, what they are)`` -> raw outputs.
#: ``what`` is ``"clean"`` or ``"DAMAGE-SEVERITY"``; a frozen trunk's run passes one that caches pooled features.
Scorer = Callable[[np.ndarray, FaceArray, str], RawOutputs]


def robustness_subset(split: FaceSplit, faces: int, seed: int = 0) -> np.ndarray:
    """The sorted indices of ``faces`` faces of ``split`` (all of them when ``faces`` is 0 or at least the split),
    stratified by expression code (unlabelled faces, -1, are one stratum): each stratum gets its share of
    ``faces`` (largest remainder), drawn without replacement from ``seed``. The same split and seed give the same
    faces, whichever model is scored."""
    n = len(split)
    if faces <= 0 or faces >= n:
        return np.arange(n)
    codes = np.asarray(split.expression)
    strata, counts = np.unique(codes, return_counts=True)
    quota = counts * faces / n
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take), kind="stable")[: faces - int(take.sum())]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(codes == code), size=k, replace=False) for code, k in zip(strata, take)]
    return np.sort(np.concatenate(chosen))


class _DamagedFaces:
    """The subset's faces under one damage, made on first access: a scorer that finds them cached never pays for
    the damage."""

    def __init__(self, faces: Callable[[], np.ndarray], damage: Damage, severity: int, seed: int) -> None:
        self._faces, self._damage, self._severity, self._seed = faces, damage, severity, seed
        self._made: np.ndarray | None = None

    def _get(self) -> np.ndarray:
        if self._made is None:
            self._made = damaged(self._faces(), self._damage, self._severity, self._seed)
        return self._made

    @property
    def shape(self) -> tuple[int, ...]:
        return self._get().shape

    def __len__(self) -> int:
        return len(self._get())

    def __getitem__(self, key: Any) -> np.ndarray:
        return self._get()[key]


def _images_at(images: Callable[[], np.ndarray], where: np.ndarray) -> np.ndarray:
    return images()[where]


def _scores(outputs: Outputs, expression: np.ndarray, va: np.ndarray, metrics: tuple[str, ...]) -> dict[str, Any]:
    scores: dict[str, float | None] = {}
    if "accuracy" in metrics:
        scores["accuracy"] = float(np.mean(outputs["probs"].argmax(1) == expression))
    if {"valence_ccc", "arousal_ccc"} & set(metrics):
        scores["valence_ccc"] = ccc(va[:, 0], outputs["va"][:, 0])
        scores["arousal_ccc"] = ccc(va[:, 1], outputs["va"][:, 1])
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


def severity_plan(expression: np.ndarray, damages: int, seed: int) -> np.ndarray:
    """The one severity (1-3) each face gets under each damage, shape ``(damages, faces)``: a damage then costs one
    pass of the subset instead of three.

    The damages go in blocks of three. For each block the faces are ordered by expression code (ties in a random
    order drawn from ``seed`` and the block) and dealt round-robin to severities 1, 2 and 3, the deal turning by
    one for each damage of the block. So each severity of each damage gets a third of the faces and of each
    expression, and each face meets each severity once per block: the mean over damages and severities estimates
    what scoring every face at every severity would, from a third of the passes (docs/robustness.md gives the
    measurement).
    """
    n = len(expression)
    plan = np.zeros((damages, n), dtype=np.int64)
    for k in range(damages):
        block = k // 3
        order = np.lexsort((np.random.default_rng([seed, block]).random(n), np.asarray(expression)))
        plan[k, order] = (np.arange(n) + k) % 3 + 1
    return plan


def _finite_mean(rows: np.ndarray) -> np.ndarray:
    """The mean over axis 0 of the finite entries (NaN where a column has none), without numpy's empty-slice
    warning: a bootstrap draw may hold none of a small cell's faces."""
    finite = np.isfinite(rows)
    count = finite.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(finite, rows, 0).sum(0) / count, np.nan)


def _weighted_ccc(truth: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Lin's CCC of ``truth`` and ``pred`` (faces) under each row of ``weights`` (draws x faces: how many times a
    bootstrap draw holds each face), with population moments as ``metrics.ccc``; NaN where undefined."""
    total = weights.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mt, mp = weights @ truth / total, weights @ pred / total
        vt = weights @ truth**2 / total - mt**2
        vp = weights @ pred**2 / total - mp**2
        cov = weights @ (truth * pred) / total - mt * mp
        denominator = vt + vp + (mt - mp) ** 2
        return np.where(denominator > 1e-12, 2 * cov / denominator, np.nan)


def _interval(
    metric: str,
    clean: Outputs,
    cells: list[tuple[np.ndarray, Outputs]],
    expression: np.ndarray,
    va: np.ndarray,
    seed: int,
) -> list[float] | None:
    """The 95% percentile bootstrap interval of ``metric``'s share kept (the damaged rows' mean over the clean
    reference, ``_clean_reference``), faces resampled:
    each draw weighs every face by how often it was drawn, in the clean score and in each damaged cell (``cells``:
    the positions of the faces scored there, and their outputs)."""
    n = len(expression)
    if n < 2:
        return None
    draws = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))
    weights = np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.float64)  # (draws, faces)

    def per_draw(outputs: Outputs, where: np.ndarray) -> np.ndarray:
        """The metric of one row's faces under every draw's weights."""
        if metric == "accuracy":
            right = outputs["probs"].argmax(1) == expression[where]
            with np.errstate(invalid="ignore", divide="ignore"):
                return weights[:, where] @ right / weights[:, where].sum(1)
        d = 0 if metric == "valence_ccc" else 1
        truth = va[where, d].astype(np.float64)
        return _weighted_ccc(truth, outputs["va"][:, d].astype(np.float64), weights[:, where])

    kept = _finite_mean(np.stack([per_draw(o, where) for where, o in cells]))
    base = _finite_mean(np.stack([per_draw(_rows_of(clean, where), where) for where, _ in cells]))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(base > 0, kept / base, np.nan)
    ratio = ratio[np.isfinite(ratio)]
    if len(ratio) < BOOTSTRAP // 2:
        return None
    low, high = np.percentile(ratio, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def _rows_of(outputs: Outputs, where: np.ndarray) -> Outputs:
    return {key: value[where] for key, value in outputs.items()}


def _clean_reference(
    clean: Outputs, cells: list[tuple[np.ndarray, Outputs]], expression: np.ndarray, va: np.ndarray, metric: str
) -> float | None:
    """What a share kept divides by: the mean over the rows of the clean score of each row's own faces. With every
    face in every row it is the subset's clean score; with a third of the faces per row it has the same sample size
    as the damaged scores, so a statistic that runs lower on fewer faces (CCC) is compared like with like."""
    values = [_scores(_rows_of(clean, where), expression[where], va[where], (metric,))[metric] for where, _ in cells]
    return _mean(values)


def robustness_section(
    model: AffectModel,
    preprocess: Preprocess,
    split: FaceSplit,
    document: dict[str, Any],
    tta_flip: bool,
    batch_size: int = 64,
    seed: int = 0,
    calibration: Calibration | None = None,
    faces: int = SUBSET_FACES,
    flip: bool = False,
    scorer: Scorer | None = None,
    every_severity: bool = False,
) -> dict[str, Any]:
    """Score a fixed stratified subset of ``faces`` faces of ``split`` (``robustness_subset``; 0: all) clean and
    under every damage x severity, with the flip TTA when ``flip`` and ``tta_flip`` are both set; each face at one
    severity per damage unless ``every_severity`` (``severity_plan``).

    The section lists each result (with ``faces``, how many were scored there) and, per metric, the mean over all
    damages and severities and that mean relative to the clean score of the same faces (``accuracy_relative``
    ..., over ``clean_reference``: see ``_clean_reference``), with its 95% bootstrap interval over the faces
    (``accuracy_relative_interval`` ...). ``clean`` holds the subset's clean scores and the ``trust.SHIFT_METRICS``
    of its outputs with ``calibration`` (the model's); ``clean_all`` the scores of the metrics ``document`` (every
    face, the model's TTA). ``scorer`` computes the heads (default: the model on the images, ``batch_size`` at a
    time). The images are damaged with ``seed``, so a rerun gives the same numbers.
    """
    clean_all = _clean_scores(document)
    metrics = tuple(clean_all)
    with_flip = flip and tta_flip
    chosen = robustness_subset(split, faces, seed)
    expression = np.asarray(split.expression)[chosen]
    va = np.asarray(split.va)[chosen]
    labels = expression if "accuracy" in metrics else None
    targets = va if "valence_ccc" in metrics else None
    every = len(chosen) == len(split)
    plan = None if every_severity else severity_plan(expression, len(DAMAGES), seed)
    subset_faces: np.ndarray | None = None

    def subset_images() -> np.ndarray:
        nonlocal subset_faces
        if subset_faces is None:
            subset_faces = np.asarray(split.images[:] if every else split.images[chosen])
        return subset_faces

    def run(where: np.ndarray, images: FaceArray, what: str) -> Outputs:
        if scorer is not None:
            return to_outputs(scorer(chosen[where], images, what), calibration)
        return to_outputs(raw_images(model, images, preprocess, batch_size, tta_flip=with_flip), calibration)

    everyone = np.arange(len(chosen))
    clean_outputs = run(everyone, split.images if every else subset_images(), "clean")
    clean: dict[str, Any] = {**_scores(clean_outputs, expression, va, metrics)}
    clean |= shift_metrics(clean_outputs, labels, targets)
    results: list[dict[str, Any]] = []
    cells: list[tuple[np.ndarray, Outputs]] = []
    for k, damage in enumerate(DAMAGES):
        for severity in (1, 2, 3):
            where = everyone if plan is None else np.flatnonzero(plan[k] == severity)
            images = _DamagedFaces(functools.partial(_images_at, subset_images, where), damage, severity, seed)
            outputs = run(where, images, f"{damage.name}-{severity}")
            cells.append((where, outputs))
            cell_labels = None if labels is None else labels[where]
            cell_targets = None if targets is None else targets[where]
            results.append(
                {
                    "damage": damage.name,
                    "severity": severity,
                    "setting": damage.setting(severity),
                    "faces": len(where),
                    **_scores(outputs, expression[where], va[where], metrics),
                    **shift_metrics(outputs, cell_labels, cell_targets),
                }
            )
    section: dict[str, Any] = {
        "seed": seed,
        "faces": len(chosen),
        "of": len(split),
        "flip": with_flip,
        "severities": "every" if every_severity else "one per face and damage",
        "passes": int(sum(len(where) for where, _ in cells)),
        "bootstrap": BOOTSTRAP,
        "clean": clean,
        "clean_all": clean_all,
        "results": results,
        "damaged_mean": {},
        "clean_reference": {},
    }
    for metric in metrics:
        mean = _mean([r[metric] for r in results])
        section["damaged_mean"][metric] = mean
        reference = _clean_reference(clean_outputs, cells, expression, va, metric)
        section["clean_reference"][metric] = reference
        section[f"{metric}_relative"] = _relative(mean, reference)
        section[f"{metric}_relative_interval"] = (
            _interval(metric, clean_outputs, cells, expression, va, seed)
            if section[f"{metric}_relative"] is not None
            else None
        )
    for metric in SHIFT_METRICS:
        if any(metric in r for r in results):
            section["damaged_mean"][metric] = _mean([r.get(metric) for r in results])
    section["sentence"] = _sentence(section, metrics[0])
    return section


def subset_digest(hashes: list[str]) -> str:
    """A short name for an ordered list of face hashes (the subset a damaged pass was made of)."""
    return hashlib.sha1("\n".join(hashes).encode()).hexdigest()[:12]


def _sentence(section: dict[str, Any], metric: str) -> str:
    """The headline: what share of the clean score survives, and the damage that hurts most."""
    relative = section[f"{metric}_relative"]
    scored = [r for r in section["results"] if r[metric] is not None]
    if relative is None or not scored:
        return f"{metric.replace('_', ' ')}: no clean score to compare with."
    worst = min(scored, key=lambda r: r[metric])
    interval = section.get(f"{metric}_relative_interval")
    spread = f" (95% interval {interval[0]:.2f}-{interval[1]:.2f} over faces)" if interval else ""
    faces = section.get("faces")
    which = (
        f" on {faces} of the {section['of']} faces (stratified by expression, seed {section['seed']}"
        f"{'' if section.get('severities', 'every') == 'every' else '; each face at one severity per damage'})"
        if faces is not None and faces < section["of"]
        else ""
    )
    return (
        f"Under {len({r['damage'] for r in scored})} damages x 3 severities{which} the model keeps {relative:.2f}"
        f"{spread} of its clean {metric.replace('_', ' ')} on average; worst: {worst['damage']} at "
        f"{worst['setting']} ({worst[metric]:.3f} against {section['clean'][metric]:.3f} clean)."
        + _confidence_sentence(section)
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
