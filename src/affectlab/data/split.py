"""Stratified, duplicate-aware train/val/test splits that are saved and reused.

Byte-identical images under different ids exist in AffectNet (7 pairs in the 3,999-image set, 3 with
conflicting labels). If the two copies land in different splits the test score leaks, so every group of
identical files is assigned as a unit. Quotas per class are fixed by the largest-remainder method, so the
split sizes are exact (2,799/600/600 on 3,999 images) and the same seed always gives the same split.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectlab.atomic import write_json
from affectlab.data.images import file_md5
from affectlab.data.samples import Sample, natural_key
from affectlab.errors import AffectlabError
from affectlab.labels import NUM_EMOTIONS

__all__ = ["SPLITS", "apply_split", "load_split", "make_split", "save_split"]

SPLITS = ("train", "val", "test")


def _stratum(sample: Sample) -> int:
    if sample.expression is not None:
        return sample.expression
    if sample.votes is not None:  # a tie between emotions (FER+): the first of its top-voted classes
        return int(np.argmax(sample.votes[:NUM_EMOTIONS]))
    # No classes: stratify by valence/arousal quadrant so every split covers the circumplex.
    return int((sample.valence or 0) >= 0) * 2 + int((sample.arousal or 0) >= 0)


def _largest_remainder(weights: dict[int, int], total: int) -> dict[int, int]:
    n = sum(weights.values())
    exact = {k: total * v / n for k, v in weights.items()}
    quota = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (quota[k] - exact[k], k))[: total - sum(quota.values())]:
        quota[k] += 1
    return quota


def make_split(
    samples: Sequence[Sample],
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    hashes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Assign every sample id to train, val or test; ``hashes`` (id -> file md5) saves re-reading the files."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[hashes[sample.id] if hashes else file_md5(sample.path)].append(sample)
    n = len(samples)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    by_stratum: dict[int, list[list[Sample]]] = defaultdict(list)
    for members in groups.values():
        by_stratum[_stratum(members[0])].append(sorted(members, key=lambda s: s.id))
    sizes = {k: sum(len(g) for g in v) for k, v in by_stratum.items()}
    quotas = {"test": _largest_remainder(sizes, n_test), "val": _largest_remainder(sizes, n_val)}
    rng = np.random.default_rng(seed)
    assigned: dict[str, list[str]] = {name: [] for name in SPLITS}
    for stratum in sorted(by_stratum):
        stratum_groups = sorted(by_stratum[stratum], key=lambda g: g[0].id)
        order = rng.permutation(len(stratum_groups))
        # Multi-member groups first, singletons last: quotas then fill exactly with singletons.
        shuffled = sorted((stratum_groups[i] for i in order), key=lambda g: -len(g))
        left = {"test": quotas["test"][stratum], "val": quotas["val"][stratum]}
        for group in shuffled:
            target = next((s for s in ("test", "val") if left[s] >= len(group)), "train")
            if target != "train":
                left[target] -= len(group)
            assigned[target].extend(s.id for s in group)
    duplicates = sum(len(g) - 1 for g in groups.values() if len(g) > 1)
    return {
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "counts": {name: len(ids) for name, ids in assigned.items()},
        "duplicate_images_grouped": duplicates,
        **{name: sorted(ids, key=natural_key) for name, ids in assigned.items()},
    }


def save_split(split: dict[str, Any], path: str | Path) -> Path:
    return write_json(path, split)


def load_split(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AffectlabError(f"{path}: split file not found") from None
    except json.JSONDecodeError as exc:
        raise AffectlabError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(split, dict):
        raise AffectlabError(f"{path}: not a split file (expected a JSON object)")
    # A multi-dataset run's split holds one split per source under "sources" (see affectlab.data.sources).
    sources = split.get("sources")
    parts: dict[str, Any] = sources if isinstance(sources, dict) else {"": split}
    for name, part in parts.items():
        missing = [s for s in SPLITS if not isinstance(part, dict) or not isinstance(part.get(s), list)]
        if missing:
            of = f" (source {name})" if name else ""
            raise AffectlabError(f"{path}: split file{of} lacks the list(s) {', '.join(missing)}")
    return split


def apply_split(samples: Sequence[Sample], split: dict[str, Any], where: str = "split") -> dict[str, list[Sample]]:
    """Select the samples of each split, refusing a split that names ids the dataset does not have."""
    by_id = {s.id: s for s in samples}
    out: dict[str, list[Sample]] = {}
    for name in SPLITS:
        ids = split[name]
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise AffectlabError(
                f"{where}: {len(unknown)} id(s) of the {name} split are not in the dataset (first: {unknown[0]})"
            )
        out[name] = [by_id[i] for i in ids]
    return out
