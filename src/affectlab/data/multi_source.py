"""Several datasets in one run: each read, split and decoded on its own, then joined with a source index.

Each source keeps its own split, drawn with the run's seed and fractions, stratified and duplicate-aware exactly as
a single dataset's (``make_split``), so a source's test split is the same whether it is trained alone or with
others, and no byte-identical copy crosses splits inside a source. ``split.json`` holds one split per source under
``sources`` (by name, with its path). The joined splits qualify each id with its source's name (``fer2013/angry/1.jpg``).

What a source labels is recorded as a ``SourceInfo``: the emotion classes it can name (class folders: the classes
its folders map to; AffectNet layouts: all eight, or those of its ``class_map``), and whether it has valence/arousal.
Training masks what a source does not label (``affectlab.training.losses``).

Images of different sources may differ in size and channels (AffectNet RGB photos, FER-2013 48 px greyscale): every
face is decoded to RGB, a grey image replicated to three channels, and resized to the model's input size; the run
logs one line saying so when the sources differ.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from affectlab.config import DataConfig, SourceConfig
from affectlab.data.converted import is_converted
from affectlab.data.prepared import PreparedData, SplitData, prepare_data, split_rows
from affectlab.data.samples import FaceSplit
from affectlab.data.split import SPLITS, load_split
from affectlab.errors import AffectlabError
from affectlab.labels import EMOTIONS, NUM_EMOTIONS

__all__ = [
    "SourceInfo",
    "SourcesData",
    "prepare_sources",
    "source_infos",
    "source_part",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceInfo:
    """What one source of a run is and labels: its name and path, its sampling weight (or its fixed draws per
    epoch, ``per_epoch``), the emotion codes it can name (empty: no classes), whether it has valence/arousal, and
    what its crowd votes train (``targets``: votes or majority; None without votes), and its own class weighting
    (``class_weights``; None: the run's ``train.class_weights``)."""

    name: str
    path: str
    weight: float = 1.0
    classes: tuple[int, ...] = tuple(range(NUM_EMOTIONS))
    has_va: bool = True
    per_epoch: int | None = None
    targets: str | None = None
    class_weights: str | None = None

    @property
    def class_mask(self) -> np.ndarray:
        mask = np.zeros(NUM_EMOTIONS, dtype=bool)
        mask[list(self.classes)] = True
        return mask

    @property
    def missing_classes(self) -> list[str]:
        return [EMOTIONS[c] for c in range(NUM_EMOTIONS) if c not in self.classes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "weight": self.weight,
            "classes": [EMOTIONS[c] for c in self.classes],
            "valence_arousal": self.has_va,
            **({"per_epoch": self.per_epoch} if self.per_epoch is not None else {}),
            **({"targets": self.targets} if self.targets is not None else {}),
            **({"class_weights": self.class_weights} if self.class_weights is not None else {}),
        }


class SourcesData(PreparedData):
    """Several prepared sources joined: ``splits`` hold every source's samples (``SplitData.source`` says whose),
    ``parts`` each source's own ``PreparedData`` and ``infos`` what each labels."""

    def __init__(self, parts: dict[str, PreparedData], infos: list[SourceInfo], splits: dict[str, SplitData]) -> None:
        first = next(iter(parts.values()))
        super().__init__(first.sample_set, _joined_split(parts, infos), splits, [])
        self.parts = parts
        self.infos = infos

    def subset(self, names: list[str] | None) -> SourcesData:
        """The sources ``names`` (None: all), for training on some sources while scoring all of them."""
        if names is None or names == list(self.parts):
            return self
        infos = [info for info in self.infos if info.name in names]
        parts = {info.name: self.parts[info.name] for info in infos}
        splits = {s: _join([p.splits[s] for p in parts.values()], list(parts)) for s in self.splits}
        return SourcesData(parts, infos, splits)

    @property
    def problems(self) -> list[Any]:
        return [p for part in self.parts.values() for p in part.problems]

    @property
    def source(self) -> str:
        return ", ".join(info.path for info in self.infos)

    def summary(self) -> dict[str, Any]:
        per_source = {name: part.summary() for name, part in self.parts.items()}
        class_counts: Counter[str] = Counter()
        excluded: Counter[str] = Counter()
        for part in per_source.values():
            class_counts.update(part["class_counts"])
            excluded.update(part["excluded"])
        return {
            "path": self.source,
            "layout": "+".join(part["layout"] for part in per_source.values()),
            "samples": sum(part["samples"] for part in per_source.values()),
            "excluded": dict(excluded),
            "skipped": [p for part in per_source.values() for p in part["skipped"]],
            "counts": {name: len(data) for name, data in self.splits.items()},
            "class_counts": {name: class_counts.get(name, 0) for name in EMOTIONS},
            "sources": {info.name: {**info.to_dict(), **per_source[info.name]} for info in self.infos},
        }


def source_infos(data: Any) -> list[SourceInfo]:
    """The sources of prepared (or streamed) data; one dataset is one source that labels everything it has, which
    trains exactly as before sources existed."""
    if isinstance(data, SourcesData):
        return data.infos
    return [SourceInfo(name="data", path=str(data.source))]


def source_part(split: FaceSplit, index: int) -> SplitData:
    """One source's samples of a joined split, ids as the source names them."""
    rows = np.flatnonzero(split.source == index)
    prefix = len(split.ids[rows[0]].split("/", 1)[0]) + 1 if len(rows) else 0
    part = split_rows(split, rows, [split.ids[i][prefix:] for i in rows])
    part.source = np.zeros(len(rows), dtype=np.int64)
    return part


def prepare_sources(cfg: DataConfig, input_size: int, splits: tuple[str, ...] = SPLITS) -> SourcesData:
    """The sources of ``data.sources``, each read, split and decoded into RAM, then joined (``open_dataset``)."""
    if splits == ("all",):
        raise AffectlabError("a run on several sources is scored on its sources' splits; use --split test or val")
    saved = load_split(cfg.split_file) if cfg.split_file else None
    parts: dict[str, PreparedData] = {}
    infos: list[SourceInfo] = []
    for source in cfg.sources:
        where = f"data.sources ({source.label})"
        if is_converted(source.path):
            raise AffectlabError(
                f"{where}: {source.path} is a converted (streamed) dataset; several sources are read from their raw "
                "folders for now"
            )
        one = dataclasses.replace(
            cfg,
            path=source.path,
            layout=source.layout,
            image_root=source.image_root,
            class_map=source.class_map,
            targets=source.targets,
            sources=[],
            split_file=None,
        )
        part = prepare_data(one, input_size, splits, assignment=_source_split(saved, source, cfg.split_file))
        info = _labelled(source, part, where)
        parts[source.label], infos = part, [*infos, info]
    _note_image_formats(cfg.sources, parts, input_size)
    joined = {name: _join([p.splits[name] for p in parts.values()], list(parts)) for name in splits}
    return SourcesData(parts, infos, joined)


def _source_split(saved: dict[str, Any] | None, source: SourceConfig, path: str | None) -> dict[str, Any] | None:
    if saved is None:
        return None
    if "sources" not in saved or source.label not in saved["sources"]:
        raise AffectlabError(f"{path}: the split has no part for source {source.label!r}")
    return saved["sources"][source.label]


def _labelled(source: SourceConfig, part: PreparedData, where: str) -> SourceInfo:
    """Apply the source's ``tasks`` and id ``class_map`` to its labels, and record what it labels."""
    sample_set = part.sample_set
    tasks = set(source.tasks) if source.tasks is not None else {"expression", "va"}
    has_expression = sample_set.has_expression and "expression" in tasks
    has_va = sample_set.has_va and "va" in tasks
    lacking = [t for t in tasks if not {"expression": sample_set.has_expression, "va": sample_set.has_va}[t]]
    if source.tasks is not None and lacking:
        names = {"expression": "expression classes", "va": "valence/arousal"}
        raise AffectlabError(
            f"{where}: tasks lists {', '.join(sorted(lacking))}, but {source.path} has no "
            f"{' or '.join(names[t] for t in sorted(lacking))}"
        )
    if not has_expression and not has_va:
        raise AffectlabError(f"{where}: {source.path} labels no task (neither expression classes nor valence/arousal)")
    recode = None
    if source.class_map and sample_set.has_votes:
        raise AffectlabError(
            f"{where}: class_map with crowd votes ({source.path}); FER+ votes name affectlab's classes"
        )
    if source.class_map and sample_set.layout != "folders":  # ids -> affectlab's classes
        recode = np.arange(NUM_EMOTIONS)
        for key, name in source.class_map.items():
            try:
                recode[int(key)] = EMOTIONS.index(name)
            except (ValueError, IndexError):
                raise AffectlabError(f"{where}: class_map key {key!r} is not an expression code 0-7") from None
    for split in part.splits.values():
        if recode is not None:
            split.expression = np.where(split.expression >= 0, recode[np.maximum(split.expression, 0)], -1)
        if not has_expression:
            split.expression = np.full_like(split.expression, -1)
            split.soft = np.zeros_like(split.soft)
        if not has_va:
            split.va = np.full_like(split.va, np.nan)
    classes: tuple[int, ...] = ()
    if has_expression:
        named = sample_set.layout == "folders" or bool(source.class_map)
        seen = sorted({int(c) for split in part.splits.values() for c in split.expression if c >= 0})
        classes = tuple(seen) if named else tuple(range(NUM_EMOTIONS))
    targets = source.targets if sample_set.has_votes and has_expression else None
    return SourceInfo(
        source.label, source.path, source.weight, classes, has_va, source.per_epoch, targets, source.class_weights
    )


def _note_image_formats(sources: list[SourceConfig], parts: dict[str, PreparedData], input_size: int) -> None:
    """One line when the sources' images differ in size or channels, saying how they reach the model."""
    from PIL import Image

    formats = {}
    for source in sources:
        sample = parts[source.label].sample_set.samples[0]
        with Image.open(sample.path) as image:
            channels = "grey" if image.mode in ("L", "LA", "I", "I;16", "1") else image.mode
            formats[source.label] = f"{image.width}x{image.height} {channels}"
    if len(set(formats.values())) > 1:
        log.warning(
            "sources differ in image size or channels (%s, first image of each); every face is decoded to RGB "
            "(grey replicated to 3 channels) and resized to %d px",
            ", ".join(f"{name} {fmt}" for name, fmt in formats.items()),
            input_size,
        )


def _join(parts: list[SplitData], names: list[str]) -> SplitData:
    return SplitData(
        [f"{name}/{i}" for name, part in zip(names, parts, strict=True) for i in part.ids],
        np.concatenate([part.images for part in parts]),
        np.concatenate([part.expression for part in parts]),
        np.concatenate([part.va for part in parts]),
        [h for part in parts for h in part.hashes],
        np.concatenate([np.full(len(part), i, dtype=np.int64) for i, part in enumerate(parts)]),
        np.concatenate([part.votes for part in parts]),
        np.concatenate([part.soft for part in parts]),
    )


def _joined_split(parts: dict[str, PreparedData], infos: list[SourceInfo]) -> dict[str, Any]:
    """``split.json`` of a multi-dataset run: every source's own split, by name, with its path."""
    per_source = {info.name: {"path": info.path, **parts[info.name].assignment} for info in infos}
    first = next(iter(per_source.values()))
    return {
        "seed": first.get("seed"),
        "val_fraction": first.get("val_fraction"),
        "test_fraction": first.get("test_fraction"),
        "counts": {s: sum(len(p.get(s, [])) for p in per_source.values()) for s in SPLITS},
        "duplicate_images_grouped": sum(p.get("duplicate_images_grouped", 0) for p in per_source.values()),
        "sources": per_source,
    }
