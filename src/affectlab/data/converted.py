"""A converted dataset (``affectlab data convert``) read back through LitData, never decoded whole into RAM.

The rule: a raw dataset (folder or CSV) is decoded into RAM once per run, which is fastest for a few thousand
images and is what the reference study uses; a converted dataset, a local folder or a LitData URL on object storage
(``s3://``, ``gs://``, ...), is read from its shards, so memory stays flat however large it is.

* Training streams its split: LitData's ``StreamingDataset`` shuffles chunk by chunk, and splits the samples
  between ranks and loader workers (each sample once per epoch), decoding each JPEG when it is used.
* Validation, test and ``evaluate`` read their split by index in order (``FaceImages``), a batch at a time.
  Only the labels, ids and hashes of a split are held in memory (about 100 bytes a sample).
* The frozen-trunk feature cache decodes each face once, a batch at a time, as for raw datasets.
* The split is fixed at conversion: a run that asks for another split seed, other fractions or another split
  file is refused, rather than trained on the stored split under the name of the one it asked for.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from affectlab.config import DataConfig
from affectlab.data.face_tensors import FaceToTensor
from affectlab.data.images import decode_jpeg
from affectlab.data.samples import Problem
from affectlab.data.shards import MANIFEST, SHARDS_FORMAT, SHARDS_FORMAT_VERSION
from affectlab.data.source import ALL
from affectlab.data.split import SPLITS, load_split
from affectlab.data.votes import VOTE_COLUMNS
from affectlab.errors import AffectlabError
from affectlab.extras import require

__all__ = [
    "FaceImages",
    "StreamedData",
    "StreamedSplit",
    "check_split_settings",
    "is_converted",
    "is_remote",
    "open_converted",
    "read_manifest",
]


def is_remote(path: str) -> bool:
    return "://" in path


def is_converted(path: str) -> bool:
    """A LitData URL, or a folder with a conversion manifest (raw datasets cannot be read from a URL)."""
    return is_remote(path) or (Path(path).expanduser() / MANIFEST).is_file()


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if is_remote(root) else str(Path(root).expanduser() / name)


def read_manifest(root: str) -> dict[str, Any]:
    """The manifest of a converted dataset, fetched with LitData's own downloader when ``root`` is a URL."""
    if is_remote(root):
        from litdata.streaming.downloader import get_downloader

        with tempfile.TemporaryDirectory(prefix="affectlab-manifest-") as tmp:
            local = Path(tmp) / MANIFEST
            try:
                get_downloader(root, tmp, []).download_file(_join(root, MANIFEST), str(local))
                text = local.read_text(encoding="utf-8")
            except Exception as exc:  # each object store raises its own types; all mean "unreadable"
                raise AffectlabError(
                    f"{_join(root, MANIFEST)}: cannot be read ({str(exc).splitlines()[0][:160]})"
                ) from None
    else:
        text = (Path(root).expanduser() / MANIFEST).read_text(encoding="utf-8")
    where = _join(root, MANIFEST)
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AffectlabError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != SHARDS_FORMAT:
        raise AffectlabError(f"{where}: not an affectlab conversion manifest")
    if manifest.get("format_version") != SHARDS_FORMAT_VERSION:
        raise AffectlabError(
            f"{where}: format version {manifest.get('format_version')} is not the supported "
            f"{SHARDS_FORMAT_VERSION}; convert the dataset again with this affectlab"
        )
    return manifest


class _Shards:
    """Random access to one split's shards; the LitData reader is opened lazily, once per process, so a loader
    worker forked from this process never shares the parent's reader threads."""

    def __init__(self, folder: str, count: int) -> None:
        self.folder = folder
        self.count = count
        self._dataset: Any = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "count": self.count, "_dataset": None, "_pid": -1}

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._dataset is None or self._pid != os.getpid():
            from litdata import StreamingDataset

            self._dataset, self._pid = StreamingDataset(self.folder), os.getpid()
        return self._dataset[int(index)]  # a global index: the same on every rank


class FaceImages:
    """A split's faces as a read-only uint8 NHWC array-like: ``images[i]``, ``images[a:b]``, ``images[[i, j]]``.

    It is what the in-RAM path's array is to evaluation code (``predict_images``, figures), but decodes only the
    faces asked for.
    """

    def __init__(self, parts: Sequence[_Shards], size: int) -> None:
        self.parts = list(parts)
        self.size = size
        self.offsets = np.cumsum([0, *(p.count for p in self.parts)])
        self.shape = (int(self.offsets[-1]), size, size, 3)
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def item(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} faces")
        index %= len(self)
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.parts[part][index - int(self.offsets[part])]

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return decode_jpeg(self.item(int(key))["image"])
        indices = range(len(self))[key] if isinstance(key, slice) else [int(i) for i in key]
        out = np.empty((len(indices), self.size, self.size, 3), dtype=np.uint8)
        for row, index in enumerate(indices):
            out[row] = decode_jpeg(self.item(index)["image"])
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)


class StreamedSplit:
    """One split of a converted dataset: the interface of the in-RAM ``SplitData`` without the pixels in RAM."""

    def __init__(self, folders: Sequence[str], counts: Sequence[int], size: int) -> None:
        self.folders = list(folders)
        self.images = FaceImages([_Shards(f, n) for f, n in zip(folders, counts, strict=True)], size)

    def __len__(self) -> int:
        return len(self.images)

    @cached_property
    def _labels(self) -> dict[str, Any]:
        """Ids, labels and hashes, read once from the shards (the JPEGs are not decoded)."""
        items = [self.images.item(i) for i in range(len(self))]
        return {
            "ids": [str(item["id"]) for item in items],
            "hashes": [str(item["hash"]) for item in items],
            "expression": np.array([int(item["expression"]) for item in items], dtype=np.int64),
            "va": np.array([[item["valence"], item["arousal"]] for item in items], dtype=np.float32).reshape(-1, 2),
        }

    @property
    def ids(self) -> list[str]:
        return self._labels["ids"]

    @property
    def hashes(self) -> list[str]:
        return self._labels["hashes"]

    @property
    def expression(self) -> np.ndarray:
        return self._labels["expression"]

    @property
    def va(self) -> np.ndarray:
        return self._labels["va"]

    @property
    def source(self) -> np.ndarray:
        return np.zeros(len(self), dtype=np.int64)  # a converted dataset is one source

    @property
    def votes(self) -> np.ndarray:
        return np.zeros((len(self), len(VOTE_COLUMNS)), dtype=np.float32)  # shards hold no crowd votes

    @property
    def soft(self) -> np.ndarray:
        return np.zeros(len(self), dtype=bool)


@dataclass
class StreamedData:
    """A converted dataset opened for a run: a ``Dataset`` (see ``data.dataset``) whose splits stay in the shards."""

    root: str
    manifest: dict[str, Any]
    splits: dict[str, StreamedSplit]

    @property
    def assignment(self) -> dict[str, Any]:
        return self.manifest["split"]

    @property
    def problems(self) -> list[Problem]:
        return []  # met and recorded at conversion (manifest "skipped")

    @property
    def source(self) -> str:
        return self.root

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.root,
            "layout": "converted",
            "source": self.manifest["source"],
            "samples": sum(self.manifest["counts"].values()),
            "excluded": self.manifest["excluded"],
            "skipped": self.manifest["skipped"],
            "counts": {name: len(part) for name, part in self.splits.items()},
            "class_counts": self.manifest["class_counts"],
        }

    def train_loader(
        self,
        to_tensor: FaceToTensor,
        batch_size: int,
        num_workers: int,
        seed: int,
        generator: torch.Generator,
        sample_weights: np.ndarray | None = None,
        num_samples: int | None = None,
    ) -> DataLoader:
        """The train split streamed from its shards, shuffled by LitData from ``seed`` and the epoch.

        Drawing by ``sample_weights`` (or ``num_samples`` per epoch) needs random access to the whole split, which
        streaming gives up.
        """
        if sample_weights is not None or num_samples is not None:
            raise AffectlabError(
                f"{self.root}: train.sampler=balanced needs the dataset in RAM; a converted dataset is streamed "
                "(use train.class_weights=balanced instead)"
            )
        from affectlab.data.shard_stream import FaceStream, FaceStreamLoader  # LitData's loader, for training only

        stream = FaceStream(self.splits["train"].folders[0], to_tensor, seed=seed)
        return FaceStreamLoader(
            stream, batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0
        )


def check_split_settings(cfg: DataConfig, manifest: dict[str, Any], root: str) -> None:
    """Refuse a split other than the one ``root`` was converted with (seed, fractions, or a split file's lists)."""
    if cfg.split_file:
        given = load_split(cfg.split_file)
        differ = [name for name in SPLITS if given[name] != manifest["split"][name]]
        if differ:
            raise AffectlabError(
                f"{cfg.split_file}: the {', '.join(differ)} split(s) differ from the split {root} "
                "was converted with; a converted dataset keeps its split (convert again with "
                "--split-file to change it)"
            )
        return
    settings = manifest["settings"]
    for key in ("split_seed", "val_fraction", "test_fraction"):
        asked, stored = getattr(cfg, key), settings[key]
        if asked != stored:
            raise AffectlabError(
                f"{root}: data.{key}={asked} differs from the data.{key}={stored} this dataset was converted with; "
                f"a converted dataset keeps its split (convert again with data.{key}={asked}, or use the raw folder)"
            )


def open_converted(cfg: DataConfig, input_size: int, splits: tuple[str, ...] = SPLITS) -> StreamedData:
    """Open a converted dataset for a run; ``splits=("all",)`` reads its three splits as one (any split settings)."""
    require("litdata", "a converted dataset")
    root = cfg.path if is_remote(cfg.path) else str(Path(cfg.path).expanduser())
    manifest = read_manifest(root)
    size = int(manifest["settings"]["input_size"])
    if size != input_size:
        raise AffectlabError(
            f"{root}: converted at {size} px, but the model takes {input_size} px; "
            f"use --input-size {size}, or convert again with --input-size {input_size}"
        )
    if splits != (ALL,):
        check_split_settings(cfg, manifest, root)
    parts = {name: (_join(root, name), int(manifest["counts"][name])) for name in SPLITS}
    chosen = {name: [name] for name in splits if name != ALL}
    if ALL in splits:
        chosen[ALL] = list(SPLITS)
    opened = {
        name: StreamedSplit([parts[p][0] for p in members], [parts[p][1] for p in members], size)
        for name, members in chosen.items()
    }
    return StreamedData(root, manifest, opened)
