"""The ``affectlab predict`` loop: sources -> items -> batched predictions -> records, annotations, progress.

All sources go through one ``predict_stream``, so face crops are batched across images and frames alike, and
results come back in input order. Per-source state (a smoother and an annotated-video writer for each video) is
opened when a source's first result arrives and closed when the next source starts, so only one video writer
is open at a time and memory stays flat however long the inputs are.

``predict_local`` is the whole local run behind ``affectlab.predict``: every check that can fail does so before
the model is loaded, and a results file is written atomically, so a failed or interrupted run never leaves a
half file that looks complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import cv2

from affectlab.atomic import atomic_write, write_bytes
from affectlab.data.samples import IMAGE_SUFFIXES
from affectlab.errors import AffectlabError
from affectlab.runtime.annotate import draw_result
from affectlab.runtime.predictor import AffectPredictor, Item, load_for
from affectlab.runtime.records import RecordWriter, output_format
from affectlab.runtime.results import ImageResult
from affectlab.runtime.settings import PredictConfig
from affectlab.runtime.sources import Source
from affectlab.runtime.timeline import TrackLog
from affectlab.runtime.tracking import track_and_smooth
from affectlab.runtime.video import VideoWriter, iter_video, iter_webcam, open_webcam, read_ahead, video_info

__all__ = [
    "PredictSummary",
    "check_out_file",
    "estimate_items",
    "open_cameras",
    "plan_annotations",
    "predict_local",
    "run_predictions",
]


@dataclass
class PredictSummary:
    """What a ``predict`` run did: counts for the final message, where the results went, and (without a results
    file or stream) the results themselves, in input order."""

    items: int = 0
    faces: int = 0
    no_face: int = 0
    uncertain: int = 0  # faces below --min-confidence
    errors: int = 0
    first_error: str | None = None
    interrupted: bool = False
    annotated: list[Path] = field(default_factory=list)
    out: Path | None = None
    results: list[ImageResult] | None = None

    def to_dict(self) -> dict[str, Any]:
        counts = {k: getattr(self, k) for k in ("items", "faces", "no_face", "errors", "first_error", "interrupted")}
        return {
            **counts,
            "annotated": [str(p) for p in self.annotated],
            "out": None if self.out is None else str(self.out),
        }


def check_out_file(out: Path, overwrite: bool, suffixes: str = ".jsonl or .csv") -> None:
    """Before any work: ``out`` must be a file name in a folder that can be written, and new unless replaced."""
    if out.is_dir():
        raise AffectlabError(f"{out}: is a folder; --out takes a file name ending in {suffixes}")
    if out.exists() and not overwrite:
        raise AffectlabError(f"{out}: exists; pass --overwrite to replace it")
    folder = out.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise AffectlabError(f"{out}: cannot be written ({folder} is not a writable folder)")


def predict_local(
    model: str | Path,
    sources: list[Source],
    config: PredictConfig,
    out: str | Path | TextIO | None = None,
    annotate_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    source: str | Path | None = None,
) -> PredictSummary:
    """Predict on ``sources`` in this process; see ``affectlab.predict`` for ``out``. ``out`` (a path) must have
    passed ``check_out_file``; annotated files are checked here, and cameras opened, before the model loads.
    ``source``: what the user called the model, when ``model`` is its ONNX export (see ``runtime.predictor.load``).
    """
    fmt = output_format(out) if isinstance(out, (str, Path)) else "jsonl"
    annotate_dir = None if annotate_dir is None else Path(annotate_dir)
    if annotate_dir is not None:
        _check_annotated(annotate_dir, plan_annotations(sources, annotate_dir), overwrite)
    if not logging.getLogger("affectlab").isEnabledFor(logging.INFO):
        _quiet_opencv()
    cameras = open_cameras(sources)
    predictor = load_for(model, config, webcam=bool(cameras), source=source)

    def run(on_result: Callable[[ImageResult], None]) -> PredictSummary:
        with _progress_bar(estimate_items(sources, config.every)) if progress else nullcontext(None) as advance:

            def each(result: ImageResult) -> None:
                on_result(result)
                if advance is not None:
                    advance()

            return run_predictions(predictor, sources, each, config, annotate_dir, cameras)

    if out is None:
        results: list[ImageResult] = []
        summary = run(results.append)
        summary.results = results
        return summary
    if not isinstance(out, (str, Path)):
        writer = RecordWriter(out, fmt, landmarks=config.landmarks, eyes=config.eyes)
        return run(lambda result: writer.write(result.records()))
    box: dict[str, PredictSummary] = {}

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="") as stream:
            writer = RecordWriter(stream, fmt, landmarks=config.landmarks, eyes=config.eyes)
            box["summary"] = run(lambda result: writer.write(result.records()))

    atomic_write(out, write)
    box["summary"].out = Path(out)
    return box["summary"]


def _check_annotated(folder: Path, plan: dict[str, Path], overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise AffectlabError(f"{folder}: --save-annotated needs a folder, and this is a file")
    existing = [target for target in plan.values() if target.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise AffectlabError(f"{existing[0]}: exists{more}; pass --overwrite to replace annotated files")


def _quiet_opencv() -> None:
    """OpenCV and FFmpeg print their own warnings for every broken file; our records already say it in one line."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _progress_bar(total: int | None) -> AbstractContextManager[Callable[[], None]]:
    """A context giving ``advance()``: a rich progress bar with items per second on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from affectlab.runtime.progress import ItemRate

    @contextmanager
    def bar() -> Iterator[Callable[[], None]]:
        columns = [TextColumn("predict"), BarColumn(), MofNCompleteColumn(), ItemRate(), TimeElapsedColumn()]
        with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
            task = progress.add_task("predict", total=total)
            yield lambda: progress.advance(task)

    return bar()


def estimate_items(sources: list[Source], every: int) -> int | None:
    """Items the run will process (images + frames / every), or None when a webcam makes it open-ended."""
    total = 0
    for source in sources:
        if source.kind == "webcam":
            return None
        if source.error is not None:
            total += 1
            continue
        if source.kind == "video" and source.path is not None:
            total += max(1, -(-video_info(source.path)[1] // every))
        else:
            total += 1
    return total


def run_predictions(
    predictor: AffectPredictor,
    sources: list[Source],
    on_result: Callable[[ImageResult], None],
    config: PredictConfig,
    annotate_dir: Path | None = None,
    cameras: dict[int, cv2.VideoCapture] | None = None,
) -> PredictSummary:
    """Predict on every source, handing each result to ``on_result`` as it comes; returns the counts.

    Video frames are tracked and smoothed (``config.smooth``); with ``annotate_dir``, annotated copies are written
    there. ``cameras`` are the already opened webcams of the webcam sources (see ``open_cameras``). A
    KeyboardInterrupt ends a webcam run normally (that is how one stops a camera); on files it propagates.
    """
    summary = PredictSummary()
    cameras = cameras if cameras is not None else open_cameras(sources)
    by_name = {s.name: s for s in sources}
    state = _SourceState(config, annotate_dir, summary, plan_annotations(sources, annotate_dir))
    keep = annotate_dir is not None
    try:
        items = _items(sources, config.every, cameras, predictor.workers > 1)
        for result in predictor.predict_stream(items, keep_images=keep):
            result = state.process(result, by_name[result.source])
            _count(summary, result)
            on_result(result)
    except KeyboardInterrupt:
        if not cameras:
            state.abort()
            raise
        summary.interrupted = True
    except BaseException:
        state.abort()
        raise
    state.close()
    return summary


def open_cameras(sources: list[Source]) -> dict[int, cv2.VideoCapture]:
    """Open every webcam source up front, so a missing camera fails before any model is loaded."""
    return {s.camera: open_webcam(s.camera) for s in sources if s.kind == "webcam" and s.camera is not None}


def plan_annotations(sources: list[Source], annotate_dir: Path | None) -> dict[str, Path]:
    """Where each source's annotated copy goes, known before the run so that existing files can be refused.

    The folder structure of the input is kept; two inputs with the same name (``a/x.jpg`` and ``b/x.jpg`` given as
    files) get ``x.jpg`` and ``x-2.jpg``."""
    if annotate_dir is None:
        return {}
    plan: dict[str, Path] = {}
    taken: set[Path] = set()
    for source in sources:
        if source.error is not None or source.name in plan:
            continue
        rel = source.rel or Path(Path(source.name).name)
        if source.kind == "image":
            rel = rel.with_suffix(rel.suffix.lower() if rel.suffix.lower() in IMAGE_SUFFIXES else ".png")
        elif source.kind == "webcam":
            rel = rel.with_suffix(".mp4")
        target, n = annotate_dir / rel, 1
        while target in taken:
            n += 1
            target = annotate_dir / rel.with_name(f"{rel.stem}-{n}{rel.suffix}")
        taken.add(target)
        plan[source.name] = target
    return plan


def _items(
    sources: list[Source], every: int, cameras: dict[int, cv2.VideoCapture], ahead: bool = False
) -> Iterator[Item]:
    """The items of all sources in order; with ``ahead``, video files are decoded in a thread of their own
    (``read_ahead``), so decoding overlaps detection and the model. A webcam is never read ahead: its frames
    would only wait, and be late when shown."""
    for source in sources:
        if source.error is not None:
            yield Item(source.name, error=source.error)
        elif source.kind == "video" and source.path is not None:
            frames = iter_video(source.path, every, source.name)
            yield from read_ahead(frames) if ahead else frames
        elif source.kind == "webcam":
            camera = source.camera or 0
            yield from iter_webcam(cameras[camera], camera, every)
        else:  # read by the predictor (in its workers), at the scales it needs
            yield Item(source.name, path=source.path or Path(source.name))


def _count(summary: PredictSummary, result: ImageResult) -> None:
    summary.items += 1
    summary.faces += len(result.faces)
    summary.uncertain += sum(face.uncertain for face in result.faces)
    summary.no_face += int(result.no_face)
    if result.error is not None:
        summary.errors += 1
        summary.first_error = summary.first_error or result.error


class _SourceState:
    """Tracking, smoothing and annotated output for the source now being processed."""

    def __init__(
        self, config: PredictConfig, annotate_dir: Path | None, summary: PredictSummary, plan: dict[str, Path]
    ) -> None:
        self.every, self.smooth, self.annotate_dir = config.every, config.smooth, annotate_dir
        self.summary, self.plan = summary, plan
        self.current: Source | None = None
        self.smoothed: Callable[[ImageResult], ImageResult] | None = None
        self.tracks: TrackLog | None = None
        self.video: VideoWriter | None = None

    def process(self, result: ImageResult, source: Source) -> ImageResult:
        if source is not self.current:
            self.close()
            self.current = source
            self.smoothed = track_and_smooth(self.smooth) if source.kind != "image" else None
        if self.smoothed is not None:
            result = self.smoothed(result)
            if self.annotate_dir is not None:
                if self.tracks is None:
                    fps = video_info(source.path)[0] if source.path else 0.0
                    self.tracks = TrackLog(fps, self.every)
                self.tracks.add(result)
        if self.annotate_dir is not None and result.image is not None:
            self._annotate(result, source)
        return result

    def _annotate(self, result: ImageResult, source: Source) -> None:
        target = self.plan[source.name]
        drawn = draw_result(result.image, result, legend=source.kind == "image")  # type: ignore[arg-type]
        if source.kind == "image":
            ok, data = cv2.imencode(target.suffix, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            if ok:
                write_bytes(target, data.tobytes())
                self.summary.annotated.append(target)
            return
        if self.video is None:
            fps = video_info(source.path)[0] / self.every if source.path else 15.0
            self.video = VideoWriter(target, fps)
        self.video.write(drawn)

    def close(self) -> None:
        if self.video is not None:
            self.video.close()
            self.summary.annotated.append(self.video.path)
            if self.tracks is not None:  # per-track summary and timeline next to the annotated video
                self.summary.annotated += self.tracks.write(self.video.path)
        self.video, self.tracks = None, None

    def abort(self) -> None:
        if self.video is not None:
            self.video.abort()
        self.video, self.tracks = None, None
