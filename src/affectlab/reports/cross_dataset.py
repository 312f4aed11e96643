"""The cross-dataset table of a study on several sources: how each model scores on every source's test split.

Rows are the models (backbone, task, and the sources each trained on: A, B, A+B); columns are the sources' test
splits. A model is scored on every source whatever it trained on, so the off-diagonal cells show how a model holds
up on data it never saw; in-domain cells (the model trained on that source) are marked. Where a source lacks
classes, each cell gives the 8-class accuracy and the accuracy over the classes every source labels (arg-max
among those only), so a model that never saw Contempt is not scored on it.

Beside each accuracy, the ECE of the probabilities users get and the empirical coverage of the prediction sets on
that source (``trust.clean_shift_metrics`` of its ``confidence`` section): the calibration and the coverage are
fitted on the training sources' validation faces, and off the diagonal they show how far they still hold.

A source labelled by crowd votes (FER+) is scored the standard way: its accuracy is the majority-vote accuracy (ties
left out), and one more column gives the mean cross-entropy to the vote distributions and the share of faces whose
prediction is a top-voted class (``evaluation.metrics.vote_metrics``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from affectlab.evaluation.trust import clean_shift_metrics
from affectlab.reports.run_groups import spread, threads_of

__all__ = ["IN_DOMAIN_MARK", "cross_dataset_table"]

#: The soft-label scores of a crowd-voted source (``evaluation.metrics.vote_metrics``), in their column's order.
VOTE_KEYS = ("vote_cross_entropy", "top_vote_agreement")

#: Marks an in-domain cell: the model trained on that source's training split.
IN_DOMAIN_MARK = "*"


def _mean_sd(values: list[float]) -> str:
    return spread(values).cell() if values else "-"


def _mean(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{np.mean(known):.3f}" if known else "-"


def cross_dataset_table(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[str]] | None:
    """(header, rows, shared classes) of the table, or None when the runs were not scored on several sources.

    Each cell is mean ± sample SD over seeds (``reports.run_groups``) of the test accuracy, then (where a source
    lacks classes) the shared-class accuracy after a slash; ``IN_DOMAIN_MARK`` follows in-domain cells. Each
    source's accuracy column is followed by one with the mean ECE and the mean set coverage over seeds ("-" where
    the runs have none). After the seed count, the intra-op thread counts the row's runs trained with.

    Runs are grouped by backbone, task, weights and training sources; a run's optional ``group`` (a recipe's
    name, say) splits them further, so two recipes trained on the same sources get a row each.
    """
    scored = [run for run in runs if len(run["metrics"].get("sources", {})) > 1]
    if not scored:
        return None
    sources = list(dict.fromkeys(name for run in scored for name in run["metrics"]["sources"]))
    shared: list[str] = scored[0]["metrics"].get("shared_classes", [])
    # Crowd-voted sources (FER+): their accuracy is the majority-vote accuracy; a column adds the soft-label scores.
    voted = {name for run in scored for name, d in run["metrics"]["sources"].items() if "votes" in d}
    groups: dict[tuple[str, str, str, tuple[str, ...], str], list[dict[str, Any]]] = {}
    for run in scored:
        key = (
            run["backbone"],
            run["task"],
            run["weights"],
            tuple(run.get("trained_on", sources)),
            run.get("group", ""),
        )
        groups.setdefault(key, []).append(run)
    rows = []
    for (backbone, task, weights, trained_on, group), members in groups.items():
        trained = " + ".join(trained_on) + (f" ({group})" if group else "")
        cells = [backbone, task, weights, trained, str(len(members)), threads_of(members)]
        for source in sources:
            documents = [m["metrics"]["sources"][source] for m in members if source in m["metrics"]["sources"]]
            full = [d["classification"]["accuracy"] for d in documents if "classification" in d]
            part = [d["classification_shared"]["accuracy"] for d in documents if "classification_shared" in d]
            cell = _mean_sd(full) + (f" / {_mean_sd(part)}" if part else "")
            in_domain = any(d.get("in_domain") for d in documents)
            cells.append(cell + (f" {IN_DOMAIN_MARK}" if in_domain else ""))
            trust = [clean_shift_metrics(d.get("confidence")) for d in documents]
            cells.append(" / ".join(_mean([t.get(k) for t in trust]) for k in ("ece", "set_coverage")))
            if source in voted:
                votes = [d.get("votes", {}) for d in documents]
                cells.append(" / ".join(_mean([v.get(k) for v in votes]) for k in VOTE_KEYS))
        rows.append(cells)
    columns = [
        (f"{s} test", f"{s} ECE / set coverage", *((f"{s} vote CE / top-vote agreement",) if s in voted else ()))
        for s in sources
    ]
    header = ["backbone", "task", "weights", "trained on", "seeds", "threads", *(c for group in columns for c in group)]
    return header, rows, shared
