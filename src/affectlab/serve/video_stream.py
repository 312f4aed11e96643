"""A video through the service's batching queue, result by result, for ``POST /predict/video`` and the web page.

Frames are decoded one at a time in a worker thread (``iter_video``) and submitted to the same ``BatchQueue`` as
single-image requests, a few frames ahead, so they are predicted in batches with whatever else is waiting and the
one predictor of the process serves them all. Results come back in frame order, tracked and smoothed per face
exactly as ``affectlab predict`` does it (``track_and_smooth``), so memory stays flat however long the
video is. Decoding stops with an error record once a frame lies beyond the ``VideoLimits``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from affectlab.runtime.results import ImageResult
from affectlab.runtime.tracking import track_and_smooth
from affectlab.runtime.video import iter_video
from affectlab.serve.options import VideoLimits

__all__ = ["stream_video"]

Predict = Callable[[np.ndarray], Awaitable[ImageResult]]


async def stream_video(
    predict: Predict, path: Path, name: str, limits: VideoLimits, every: int = 1, smooth: int = 1, ahead: int = 8
) -> AsyncIterator[ImageResult]:
    """Each processed frame of the video at ``path`` as an ``ImageResult`` (source ``name``), in order.

    ``predict`` is the queue's submit; ``ahead`` frames are in flight at once so that they can share a batch.
    Errors of the queue (full, timed out) propagate; the frames still in flight are then cancelled.
    """
    frames = iter_video(path, every, name)
    smoothed = track_and_smooth(smooth)
    pending: deque[tuple[ImageResult, asyncio.Future[ImageResult] | None]] = deque()

    async def finished() -> ImageResult:
        placeholder, task = pending.popleft()
        if task is None:
            return placeholder
        result = await task
        return smoothed(replace(result, source=name, frame=placeholder.frame, time_s=placeholder.time_s))

    try:
        while True:
            item = await asyncio.to_thread(next, frames, None)
            if item is None:
                break
            why = limits.exceeded(item.frame or 0, item.time_s) if item.error is None else None
            if why is not None:
                pending.append((ImageResult(name, frame=item.frame, error=f"{name}: video is {why}"), None))
                break
            placeholder = ImageResult(name, frame=item.frame, time_s=item.time_s, error=item.error)
            task: asyncio.Future[ImageResult] | None = (
                None if item.image is None else asyncio.ensure_future(predict(item.image))
            )
            pending.append((placeholder, task))
            if len(pending) >= ahead:
                yield await finished()
        while pending:
            yield await finished()
    finally:
        for _, task in pending:
            if task is not None:
                task.cancel()
        with contextlib.suppress(ValueError):  # still running in its thread (cancelled mid-frame): closed when freed
            frames.close()  # type: ignore[attr-defined]  # iter_video is a generator
