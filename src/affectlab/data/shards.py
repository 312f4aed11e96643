"""``affectlab data convert``: a dataset written once as LitData shards, so that training streams it.

A raw dataset is read, hashed, split and decoded again by every run, and decoded into RAM (22 GB for full
AffectNet at 160 px). Converting does that work once: each face is decoded, cropped to its box, resized to the
chosen input size and stored as a JPEG in LitData's optimised chunks (``train/``, ``val/``, ``test/``), with its
labels, id and content hash. ``manifest.json`` (written last, atomically) records the split, the class counts, the
source, the settings and the format version; a folder without it is not a converted dataset.

The split is made once with the same code and seed as a raw run (byte-identical files kept in one split), so a
converted dataset trains on the same samples as its source. Hashing and encoding run in ``workers`` processes;
one writer per split fills the chunks in the split's order.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import signal
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from affectlab.atomic import run_folder, write_json
from affectlab.config import DataConfig
from affectlab.data.images import decode_face
from affectlab.data.samples import Problem, Sample
from affectlab.data.source import read_source
from affectlab.data.split import SPLITS
from affectlab.errors import AffectlabError
from affectlab.extras import require
from affectlab.labels import EMOTIONS
from affectlab.version import __version__

__all__ = ["JPEG_QUALITY", "MANIFEST", "SHARDS_FORMAT", "SHARDS_FORMAT_VERSION", "convert_dataset"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SHARDS_FORMAT = "affectlab-shards"
SHARDS_FORMAT_VERSION = 1
#: High enough that the crops train like the decoded originals, a tenth of their raw size.
JPEG_QUALITY = 95
#: Full-resolution colour (4:4:4): at 64-160 px, halving the chroma blurs the colour of lips and eyes visibly.
JPEG_PARAMS = [
    cv2.IMWRITE_JPEG_QUALITY,
    JPEG_QUALITY,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
]
#: LitData keeps up to 4 chunks of a reader mapped: 16 MB chunks bound that to 64 MB per loader process, and give the
#: chunk-wise shuffle more pieces to mix (1,300 chunks for full AffectNet at 160 px).
CHUNK_BYTES = "16MB"

T = TypeVar("T")
R = TypeVar("R")


def convert_dataset(
    cfg: DataConfig,
    out: str | Path,
    input_size: int,
    workers: int = 1,
    overwrite: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Write ``cfg``'s dataset as shards of ``input_size`` px faces under ``out``; returns the manifest.

    ``out`` must be new or empty; ``overwrite`` replaces an earlier conversion (only one affectlab made), and the
    old one stays untouched until the new one is complete. ``input_size`` is a validated ``model.input_size``
    (``config.resolve_config``).
    """
    if workers < 1:
        raise AffectlabError(f"--workers must be at least 1, got {workers}")
    require("litdata", "affectlab data convert")
    with run_folder(out, overwrite, keep_if=MANIFEST, kind="shards", command=command) as build:
        source = read_source(cfg, SPLITS, hash_map=lambda fn, items: _parallel(fn, items, workers))
        sample_set, hashes, by_split = source.sample_set, source.hashes, source.by_split
        if sample_set.has_votes:  # shards hold one label per face; the votes (and the ties) would be lost
            raise AffectlabError(
                f"{sample_set.root}: crowd votes (FER+) are not stored in shards yet; train on the folder itself"
            )
        written: dict[str, int] = {}
        class_counts: dict[str, dict[str, int]] = {}
        bad: list[Problem] = []
        for name in SPLITS:
            counts, problems = _write_split(build / name, by_split[name], hashes, input_size, workers, cfg)
            bad.extend(problems)
            written[name] = sum(counts.values())
            class_counts[name] = {EMOTIONS[code]: counts.get(code, 0) for code in range(len(EMOTIONS))}
            if not written[name]:
                raise AffectlabError(
                    f"{sample_set.root}: the {name} split is empty after conversion "
                    f"({len(by_split[name])} sample(s) assigned, all unreadable)"
                )
        source.check_bad_share(bad, cfg.max_bad_fraction)
        manifest = {
            "format": SHARDS_FORMAT,
            "format_version": SHARDS_FORMAT_VERSION,
            "affectlab_version": __version__,
            "source": {"path": str(sample_set.root), "layout": sample_set.layout},
            "settings": {
                "input_size": input_size,
                "jpeg_quality": JPEG_QUALITY,
                "split_seed": cfg.split_seed,
                "val_fraction": cfg.val_fraction,
                "test_fraction": cfg.test_fraction,
                "split_file": cfg.split_file,
                "image_root": cfg.image_root,
                "class_map": cfg.class_map,
                "on_bad_sample": cfg.on_bad_sample,
            },
            "has_expression": sample_set.has_expression,
            "has_va": sample_set.has_va,
            "counts": written,
            "class_counts": class_counts,
            "excluded": dict(sample_set.excluded),
            "skipped": [str(p) for p in source.unreadable + bad],
            "split": source.assignment,
        }
        write_json(build / MANIFEST, manifest)  # last: its presence marks a complete conversion
    return manifest


def _write_split(
    folder: Path, samples: list[Sample], hashes: dict[str, str], size: int, workers: int, cfg: DataConfig
) -> tuple[Counter[int], list[Problem]]:
    """Encode one split's faces in ``workers`` processes and write them, in the split's order, as LitData chunks."""
    writer = require("litdata.streaming.writer", "affectlab data convert").BinaryWriter(
        str(folder), chunk_bytes=CHUNK_BYTES
    )
    counts: Counter[int] = Counter()
    problems: list[Problem] = []
    tasks = ((s, size) for s in samples)
    for sample, (jpeg, error) in zip(samples, _parallel(_encode_face, tasks, workers), strict=True):
        if error is not None:
            if cfg.on_bad_sample == "error":
                raise AffectlabError(f"{sample.path}: {error}")
            problems.append(Problem(str(sample.path), error))
            log.warning("skipped %s: %s", sample.path, error)
            continue
        writer[sum(counts.values())] = {  # the item's index: its position among the split's written faces
            "id": sample.id,
            "hash": hashes[sample.id],
            "image": jpeg,
            "expression": -1 if sample.expression is None else sample.expression,
            "valence": math.nan if sample.valence is None else float(sample.valence),
            "arousal": math.nan if sample.arousal is None else float(sample.arousal),
        }
        counts[-1 if sample.expression is None else sample.expression] += 1
    if counts:  # an empty split is refused by the caller; LitData's merge would wait for an index never written
        writer.done()
        writer.merge()
    return counts, problems


def _encode_face(task: tuple[Sample, int]) -> tuple[bytes | None, str | None]:
    """One face as JPEG bytes, or the reason it could not be read (a worker returns it; it never raises)."""
    sample, size = task
    try:
        face = decode_face(sample, size)
    except AffectlabError as exc:
        return None, str(exc).split(": ", 1)[-1]
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR), JPEG_PARAMS)
    if not ok:
        return None, "could not be encoded as JPEG"
    return np.asarray(buffer).tobytes(), None


def _parallel(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map`` in ``workers`` processes, results in input order; in this process when ``workers`` is 1."""
    if workers == 1:
        yield from map(fn, items)
        return
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_signals)
    try:
        yield from pool.imap(fn, items, chunksize=32)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _worker_signals() -> None:
    """Workers end quietly when the pool ends them (SIGTERM), and leave Ctrl-C to the parent, which stops them."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
