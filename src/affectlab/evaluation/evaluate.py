"""Score predictions against a split: the metrics.json document, and its typed view ``Metrics``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectlab.config import ModelConfig
from affectlab.data.multi_source import SourceInfo, source_part
from affectlab.data.samples import FaceSplit
from affectlab.errors import AffectlabError
from affectlab.evaluation.analysis import analyse
from affectlab.evaluation.metrics import classification_metrics, va_metrics, vote_metrics
from affectlab.evaluation.trust import confidence_section
from affectlab.labels import EMOTIONS
from affectlab.models.meta import Calibration
from affectlab.models.outputs import Outputs
from affectlab.training.losses import selection_score

__all__ = ["Metrics", "score", "score_sources"]


@dataclass
class Metrics:
    """The scores of one model on one split, as ``affectlab.evaluate`` returns them.

    ``classification``, ``valence`` and ``arousal`` hold the sections the task and the labels allow (None
    otherwise); a metric that is undefined on the data (kappa with one class, CCC of constants) is None.
    ``to_dict()`` is the ``metrics.json`` document, unchanged.
    """

    task: str
    split: str
    n: int
    tta_flip: bool
    classification: dict[str, Any] | None = None
    valence: dict[str, Any] | None = None
    arousal: dict[str, Any] | None = None
    analysis: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # where metrics.json was written
    document: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any], path: Path | None = None) -> Metrics:
        return cls(
            task=values["task"],
            split=values["split"],
            n=int(values["n"]),
            tta_flip=bool(values["tta_flip"]),
            classification=values.get("classification"),
            valence=values.get("valence"),
            arousal=values.get("arousal"),
            analysis=values.get("analysis", {}),
            path=path,
            document=values,
        )

    @property
    def accuracy(self) -> float | None:
        return None if self.classification is None else self.classification["accuracy"]

    @property
    def ccc(self) -> tuple[float | None, float | None] | None:
        """(valence, arousal) concordance, the headline of the regression task."""
        return None if self.valence is None or self.arousal is None else (self.valence["ccc"], self.arousal["ccc"])

    @property
    def robustness(self) -> dict[str, Any] | None:
        """Scores under camera damage (``evaluation.robustness``), when the evaluation measured them."""
        return self.document.get("robustness")

    @property
    def faces_in_scenes(self) -> dict[str, Any] | None:
        """The faces pasted into generated scenes, scored end to end (``evaluation.faces_in_scenes``), when the
        evaluation measured them."""
        return self.document.get("faces_in_scenes")

    @property
    def val_score(self) -> float:
        """The selection score (``train.monitor: val_score``) of these predictions: accuracy + mean V/A CCC."""
        valence, arousal = self.ccc or (None, None)
        mean_ccc = None if valence is None or arousal is None else (valence + arousal) / 2
        return float(selection_score(self.accuracy, mean_ccc))

    def to_dict(self) -> dict[str, Any]:
        return self.document


def score(
    outputs: Outputs,
    data: FaceSplit,
    model: ModelConfig,
    split: str,
    tta_flip: bool,
    calibration: Calibration | None = None,
    uncalibrated: Outputs | None = None,
) -> dict[str, Any]:
    """The metrics.json document: only the sections the task has, and only for labels the data has.

    It names the split and the flip TTA, so that a validation score is never mistaken for a test score, and ends
    with the ``analysis`` section (what is confused with what, and where the V/A error lies) and the
    ``confidence`` section (calibration before and after ``calibration``'s temperature, whose outputs
    ``outputs`` are, against ``uncalibrated``; set and interval coverage).

    Faces with crowd votes (FER+) are scored the standard way: ``classification`` (and what is derived from it) is
    the majority-vote accuracy over the faces with a single top vote, ties left out (unknown and NF never reach a
    split), and ``votes`` adds the soft-label scores over every voted face (``metrics.vote_metrics``).
    """
    result: dict[str, Any] = {
        "task": model.task,
        "backbone": model.backbone,
        "weights": model.weights,
        "n": len(data),
        "split": split,
        "tta_flip": tta_flip,
    }
    expression, va = data.expression, data.va
    voted = np.asarray(data.votes)[:, : len(EMOTIONS)].sum(axis=1) > 0
    if "probs" in outputs and voted.any():
        majority = expression >= 0
        result["votes"] = {
            **vote_metrics(data.votes[voted], outputs["probs"][voted]),
            "n_majority": int(majority.sum()),
        }
        outputs = {key: value[majority] for key, value in outputs.items()}
        uncalibrated = None if uncalibrated is None else {key: value[majority] for key, value in uncalibrated.items()}
        expression, va = expression[majority], va[majority]
    if "probs" in outputs and len(expression) and (expression >= 0).all():
        result["classification"] = classification_metrics(expression, outputs["probs"], EMOTIONS)
    if "va" in outputs and len(va) and not np.isnan(va).any():
        result.update(va_metrics(va, outputs["va"]))
    if not {"classification", "valence"} & result.keys():
        raise AffectlabError("the data has none of the labels this model predicts; nothing to score")
    scored_va = "valence" in result
    result["analysis"] = analyse(
        result.get("classification"), va if scored_va else None, outputs["va"] if scored_va else None, EMOTIONS
    )
    labels = expression if "classification" in result else None
    before = outputs if uncalibrated is None else uncalibrated
    result["confidence"] = confidence_section(before, outputs, labels, va if scored_va else None, calibration)
    return result


def score_sources(
    outputs: Outputs,
    data: FaceSplit,
    infos: list[SourceInfo],
    model: ModelConfig,
    split: str,
    tta_flip: bool,
    trained_on: list[str] | None = None,
    select: str | None = None,
    calibration: Calibration | None = None,
    uncalibrated: Outputs | None = None,
) -> dict[str, Any]:
    """The metrics.json document of a run on several sources: each source's split scored on its own.

    ``sources`` holds one ``score`` document per source, marked ``in_domain`` when the model trained on that
    source (``trained_on``, default all). Where a source lacks classes (FER-2013 has no Contempt), each source
    also gets ``classification_shared``: the scores over the classes every source labels, the arg-max taken
    among those classes only, so that models trained with and without the missing class compare fairly. The
    top level is the selecting source's document (``select``, default the first trained source), so tables that
    read one score per run read that one; ``source`` names it. Each source's ``confidence`` section scores
    ``outputs`` (with ``calibration``) against ``uncalibrated`` as ``score`` does, so the cross-dataset table can
    say how far the calibration and the coverage hold on each source.
    """
    trained = set(trained_on or [info.name for info in infos])
    labelled = [info for info in infos if info.classes]
    shared = sorted(set.intersection(*(set(info.classes) for info in labelled))) if labelled else []
    per_source: dict[str, Any] = {}
    for index, info in enumerate(infos):
        part = source_part(data, index)
        if not len(part):
            continue
        rows = data.source == index
        part_outputs = {key: value[rows] for key, value in outputs.items()}
        part_before = None if uncalibrated is None else {key: value[rows] for key, value in uncalibrated.items()}
        try:
            document = score(part_outputs, part, model, split, tta_flip, calibration, part_before)
        except AffectlabError:  # this source has none of the labels the model predicts: nothing to score on it
            continue
        document.update({"source": info.name, "path": info.path, "in_domain": info.name in trained})
        if "classification" in document and 0 < len(shared) < len(EMOTIONS):
            majority = part.expression >= 0  # crowd-voted faces: the shared score is over the majority faces too
            document["classification_shared"] = shared_class_metrics(
                part.expression[majority], part_outputs["probs"][majority], shared
            )
        per_source[info.name] = document
    first_trained = next((info.name for info in infos if info.name in trained), infos[0].name)
    chosen = select if select in per_source else first_trained
    top = dict(per_source[chosen])
    top["sources"] = per_source
    top["shared_classes"] = [EMOTIONS[c] for c in shared]
    return top


def shared_class_metrics(expression: np.ndarray, probs: np.ndarray, classes: list[int]) -> dict[str, Any]:
    """Scores over ``classes`` only: samples of other classes left out, the prediction the most probable of
    ``classes`` (the 7-class score of a FER-2013 comparison)."""
    keep = np.isin(expression, classes)
    remap = {c: i for i, c in enumerate(classes)}
    y_true = np.array([remap[int(c)] for c in expression[keep]], dtype=np.int64)
    restricted = probs[keep][:, classes]
    restricted = restricted / restricted.sum(axis=1, keepdims=True)
    result = classification_metrics(y_true, restricted, [EMOTIONS[c] for c in classes])
    return {"classes": [EMOTIONS[c] for c in classes], "n": int(keep.sum()), **result}
