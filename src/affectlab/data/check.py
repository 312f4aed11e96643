"""``affectlab data check``: everything wrong with a dataset, found before a training run trips over it."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from affectlab.data.ferplus import EXCLUDED_NF, EXCLUDED_TIE, EXCLUDED_UNKNOWN
from affectlab.data.images import file_md5, read_rgb
from affectlab.data.readers import read_dataset
from affectlab.data.samples import Problem, SampleSet
from affectlab.errors import AffectlabError
from affectlab.labels import EMOTIONS

__all__ = ["CheckReport", "check_dataset", "format_report", "vote_lines"]


@dataclass
class CheckReport:
    sample_set: SampleSet
    problems: list[Problem] = field(default_factory=list)
    duplicate_groups: list[list[str]] = field(default_factory=list)

    @property
    def fatal(self) -> bool:
        return any(p.fatal for p in self.problems)


def check_dataset(path: str | Path, layout: str = "auto", image_root: str | None = None) -> CheckReport:
    sample_set = read_dataset(path, layout, image_root, on_bad_sample="skip")
    report = CheckReport(sample_set, list(sample_set.problems))
    by_hash: dict[str, list] = defaultdict(list)  # type: ignore[type-arg]
    for sample in sample_set.samples:
        try:
            read_rgb(sample.path)
        except AffectlabError as exc:
            report.problems.append(Problem(str(sample.path), str(exc).split(": ", 1)[-1]))
            continue
        by_hash[file_md5(sample.path)].append(sample)
    for group in by_hash.values():
        if len(group) < 2:
            continue
        report.duplicate_groups.append([s.id for s in group])
        # A crowd-voted tie (FER+) has no majority label: it conflicts with nothing.
        labels = {s.expression for s in group if s.expression is not None or s.votes is None}
        if len(labels) > 1:
            names = ", ".join(f"{s.id}={EMOTIONS[s.expression]}" for s in group if s.expression is not None)
            report.problems.append(
                Problem(str(group[0].path), f"byte-identical images with conflicting labels ({names})", fatal=False)
            )
    return report


def format_report(report: CheckReport) -> str:
    s = report.sample_set
    lines = [
        f"dataset: {s.root} ({s.layout} layout), {len(s.samples)} usable samples; excluded: {s.exclusion_summary()}"
    ]
    if s.has_expression:
        lines.append("class counts:")
        lines += [f"  {i} {name:<9} {n:>6}" for i, (name, n) in enumerate(s.class_counts().items())]
    if s.has_votes:
        lines += vote_lines(s)
    if s.has_va:
        va = np.array([[x.valence, x.arousal] for x in s.samples], dtype=np.float64)
        for j, name in enumerate(("valence", "arousal")):
            col = va[:, j]
            q1, q2, q3 = np.percentile(col, [25, 50, 75])
            lines.append(
                f"{name}: min {col.min():+.3f} max {col.max():+.3f} mean {col.mean():+.3f} std {col.std():.3f} "
                f"quartiles {q1:+.3f}/{q2:+.3f}/{q3:+.3f}"
            )
    lines.append(f"byte-identical groups: {len(report.duplicate_groups)} (kept in one split by affectlab's splitter)")
    fatal = [p for p in report.problems if p.fatal]
    warnings = [p for p in report.problems if not p.fatal]
    lines.append(f"problems: {len(fatal)} error(s), {len(warnings)} warning(s)")
    lines += [f"  error: {p}" for p in fatal] + [f"  warning: {p}" for p in warnings]
    return "\n".join(lines)


def vote_lines(s: SampleSet) -> list[str]:
    """What the crowd's votes (FER+) say: majority counts, ties, and the faces that name no emotion."""
    voted = [x for x in s.samples if x.votes is not None]
    majority = Counter(x.expression for x in voted if x.expression is not None)
    ties = len(voted) - sum(majority.values())
    tie_other = s.excluded.get(EXCLUDED_TIE, 0)
    unknown, not_face = s.excluded.get(EXCLUDED_UNKNOWN, 0), s.excluded.get(EXCLUDED_NF, 0)
    rows = len(voted) + tie_other + unknown + not_face
    by_count = sorted(majority.items(), key=lambda item: -item[1])
    return [
        f"crowd votes: {rows} faces with votes",
        "  majority label: " + ", ".join(f"{EMOTIONS[code]} {n}" for code, n in by_count),
        (
            f"  tied top votes: {ties + tie_other} ({ties} between emotions: kept, trained by their votes (targets: "
            f"votes) or left out (targets: majority), never in majority accuracy; {tie_other} with unknown or NF: "
            "dropped)"
        ),
        f"  top vote unknown: {unknown}, not a face (NF): {not_face} (dropped: they never train a class)",
    ]
