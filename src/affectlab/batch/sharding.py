"""``affectlab predict --shard I/N``: one of N parts of the inputs, for job arrays (SLURM, Kubernetes) without Ray.

The inputs are expanded as for an unsharded run (folders walked in sorted order), and part I (0-based) is the I-th
of N contiguous, near-equal blocks of that list. Every job of the array sees the same list, so the parts are
disjoint and cover it, and their outputs, concatenated in shard order, are the unsharded run's records.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from affectlab.errors import AffectlabError

__all__ = ["parse_shard", "take_shard"]

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """``"3/8"`` -> (3, 8); I counts from 0, as ``$SLURM_ARRAY_TASK_ID`` with ``--array=0-7``.

    Only the form is checked here; ``PredictConfig`` checks the numbers, for the Python API as well."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise AffectlabError(f"--shard {text}: expected I/N, e.g. 0/8 (I from 0 to N-1)")
    return int(match.group(1)), int(match.group(2))


def take_shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """The ``index``-th of ``count`` contiguous blocks of ``items``; block sizes differ by at most one."""
    return list(items[len(items) * index // count : len(items) * (index + 1) // count])
