"""The ``affectlab predict`` loop: sources -> items -> batched predictions -> records, annotations, progress.

All sources go through one ``predict_stream``, so face crops are batched across images and frames alike, and
results come back in input order. Per-source state (a smoother and an annotated-video writer for each video) is
opened when a source's first result arrives and closed when the next source starts, so only one video writer
is open at a time and memory stays flat however long the inputs are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from affectlab.atomic import write_bytes
from affectlab.data.images import read_rgb
from affectlab.data.samples import IMAGE_SUFFIXES
from affectlab.errors import AffectlabError
from affectlab.runtime.annotate import draw_result
from affectlab.runtime.predictor import AffectPredictor, Item
from affectlab.runtime.records import RecordWriter
from affectlab.runtime.results import ImageResult
from affectlab.runtime.sources import Source
from affectlab.runtime.timeline import TrackLog
from affectlab.runtime.tracking import FaceTracker
from affectlab.runtime.video import Smoother, VideoWriter, iter_video, iter_webcam, open_webcam, video_info

__all__ = ["PredictOptions", "Summary", "estimate_items", "open_cameras", "plan_annotations", "run_predictions"]


@dataclass
class PredictOptions:
    every: int = 1
    smooth: int = 1
    annotate_dir: Path | None = None


@dataclass
class Summary:
    items: int = 0
    faces: int = 0
    no_face: int = 0
    uncertain: int = 0  # faces below --min-confidence
    errors: int = 0
    first_error: str | None = None
    interrupted: bool = False
    annotated: list[Path] = field(default_factory=list)


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
    writer: RecordWriter,
    options: PredictOptions,
    cameras: dict[int, cv2.VideoCapture] | None = None,
    on_item: Callable[[], None] = lambda: None,
) -> Summary:
    """Predict on every source, writing records as they come; returns counts for the final message.

    ``cameras`` are the already opened webcams of the webcam sources (see ``open_cameras``). A KeyboardInterrupt
    ends a webcam run normally (that is how one stops a camera); on files it propagates.
    """
    summary = Summary()
    cameras = cameras if cameras is not None else open_cameras(sources)
    by_name = {s.name: s for s in sources}
    state = _SourceState(options, summary, plan_annotations(sources, options.annotate_dir))
    keep = options.annotate_dir is not None
    try:
        for result in predictor.predict_stream(_items(sources, options.every, cameras), keep_images=keep):
            result = state.process(result, by_name[result.source])
            writer.write(result.records())
            _count(summary, result)
            on_item()
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


def _items(sources: list[Source], every: int, cameras: dict[int, cv2.VideoCapture]) -> Iterator[Item]:
    for source in sources:
        if source.error is not None:
            yield Item(source.name, error=source.error)
        elif source.kind == "video" and source.path is not None:
            yield from iter_video(source.path, every, source.name)
        elif source.kind == "webcam":
            camera = source.camera or 0
            yield from iter_webcam(cameras[camera], camera, every)
        else:
            try:
                yield Item(source.name, read_rgb(source.path or source.name))
            except AffectlabError as exc:
                yield Item(source.name, error=str(exc))


def _count(summary: Summary, result: ImageResult) -> None:
    summary.items += 1
    summary.faces += len(result.faces)
    summary.uncertain += sum(face.uncertain for face in result.faces)
    summary.no_face += int(result.no_face)
    if result.error is not None:
        summary.errors += 1
        summary.first_error = summary.first_error or result.error


class _SourceState:
    """Tracking, smoothing and annotated output for the source now being processed."""

    def __init__(self, options: PredictOptions, summary: Summary, plan: dict[str, Path]) -> None:
        self.options, self.summary, self.plan = options, summary, plan
        self.current: Source | None = None
        self.tracker: FaceTracker | None = None
        self.smoother: Smoother | None = None
        self.tracks: TrackLog | None = None
        self.video: VideoWriter | None = None

    def process(self, result: ImageResult, source: Source) -> ImageResult:
        if source is not self.current:
            self.close()
            self.current = source
            video = source.kind != "image"
            self.tracker = FaceTracker(max_age=max(10, self.options.smooth)) if video else None
            self.smoother = Smoother(self.options.smooth) if video else None
        if self.tracker is not None and self.smoother is not None:
            result = self.smoother(self.tracker(result))
            if self.options.annotate_dir is not None:
                if self.tracks is None:
                    fps = video_info(source.path)[0] if source.path else 0.0
                    self.tracks = TrackLog(fps, self.options.every)
                self.tracks.add(result)
        if self.options.annotate_dir is not None and result.image is not None:
            self._annotate(result, source)
        return result

    def _annotate(self, result: ImageResult, source: Source) -> None:
        target = self.plan[source.name]
        drawn = draw_result(result.image, result)  # type: ignore[arg-type]
        if source.kind == "image":
            ok, data = cv2.imencode(target.suffix, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            if ok:
                write_bytes(target, data.tobytes())
                self.summary.annotated.append(target)
            return
        if self.video is None:
            fps = video_info(source.path)[0] / self.options.every if source.path else 15.0
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
