"""Score predictions against a split: the metrics.json document, and its typed view ``Metrics``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectlab.config import ModelConfig
from affectlab.data.prepared import SplitData
from affectlab.errors import AffectlabError
from affectlab.evaluation.analysis import analyse
from affectlab.evaluation.metrics import classification_metrics, va_metrics
from affectlab.evaluation.trust import confidence_section
from affectlab.labels import EMOTIONS
from affectlab.models.meta import Calibration
from affectlab.models.outputs import Outputs
from affectlab.training.losses import selection_score

__all__ = ["Metrics", "score"]


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
    def val_score(self) -> float:
        """The selection score (``train.monitor: val_score``) of these predictions: accuracy + mean V/A CCC."""
        valence, arousal = self.ccc or (None, None)
        mean_ccc = None if valence is None or arousal is None else (valence + arousal) / 2
        return float(selection_score(self.accuracy, mean_ccc))

    def to_dict(self) -> dict[str, Any]:
        return self.document


def score(
    outputs: Outputs,
    data: SplitData,
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
    """
    result: dict[str, Any] = {
        "task": model.task,
        "backbone": model.backbone,
        "weights": model.weights,
        "n": len(data),
        "split": split,
        "tta_flip": tta_flip,
    }
    if "probs" in outputs and (data.expression >= 0).all():
        result["classification"] = classification_metrics(data.expression, outputs["probs"], EMOTIONS)
    if "va" in outputs and not np.isnan(data.va).any():
        result.update(va_metrics(data.va, outputs["va"]))
    if not {"classification", "valence"} & result.keys():
        raise AffectlabError("the data has none of the labels this model predicts; nothing to score")
    scored_va = "valence" in result
    result["analysis"] = analyse(
        result.get("classification"), data.va if scored_va else None, outputs["va"] if scored_va else None, EMOTIONS
    )
    labels = data.expression if "classification" in result else None
    before = outputs if uncalibrated is None else uncalibrated
    result["confidence"] = confidence_section(before, outputs, labels, data.va if scored_va else None, calibration)
    return result
