"""``ServeOptions``: where the HTTP service listens and how it batches, limits and guards requests.

Kept apart from the app (which imports the runtime, OpenCV and FastAPI) so that the command line can read the
defaults for its help, and check values, without loading any of that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from affectlab.errors import AffectlabError
from affectlab.serve.access import check_bind

__all__ = ["MAX_UPLOAD_BYTES", "MAX_VIDEO_BYTES", "MB", "ServeOptions", "VideoLimits"]

MB = 1024 * 1024
MAX_UPLOAD_BYTES = 20 * MB
MAX_VIDEO_BYTES = 200 * MB


@dataclass(frozen=True)
class VideoLimits:
    """How much video one request may ask for: seconds of video and frames decoded."""

    max_seconds: float
    max_frames: int

    def exceeded(self, frame: int, seconds: float | None) -> str | None:
        """Why a video that reached ``frame`` (0-based) at ``seconds`` is over the limits, or None."""
        if frame >= self.max_frames:
            return f"more than {self.max_frames} frames (the limit)"
        if seconds is not None and seconds > self.max_seconds:
            return f"longer than {self.max_seconds:g} s (the limit)"
        return None


@dataclass(frozen=True)
class ServeOptions:
    """Where the service listens and how it batches, limits and guards requests (the ``affectlab serve`` options).

    The defaults here are the command's defaults. Values are checked once, when the options are made: a value
    that cannot work, or a bind beyond loopback without an API key (unless ``insecure``), is refused in one line
    naming its flag.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    insecure: bool = False
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    docs: bool = False
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256
    timeout_s: float = 30.0
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    max_video_bytes: int = MAX_VIDEO_BYTES
    max_video_s: float = 600.0
    max_video_frames: int = 18_000
    page: bool = True

    @property
    def video_limits(self) -> VideoLimits:
        return VideoLimits(self.max_video_s, self.max_video_frames)

    def __post_init__(self) -> None:
        for name, value, low in (
            ("--max-batch", self.max_batch, 1),
            ("--max-queue", self.max_queue, 1),
            ("--workers", self.workers, 1),
            ("--max-video-frames", self.max_video_frames, 1),
        ):
            if value < low:
                raise AffectlabError(f"{name} must be at least {low}, got {value}")
        for name, number in (("--max-wait-ms", self.max_wait_ms), ("--timeout", self.timeout_s)):
            if not (math.isfinite(number) and number >= 0):
                raise AffectlabError(f"{name} must be a number of 0 or more, got {number}")
        for name, size in (("max_upload_bytes", self.max_upload_bytes), ("max_video_bytes", self.max_video_bytes)):
            if not (math.isfinite(size) and size > 0):  # the flags are in MB, and may be fractions
                raise AffectlabError(f"--{name[:-6].replace('_', '-')}-mb must be above 0, got {size / MB:g}")
            object.__setattr__(self, name, max(1, int(size)))
        if not (math.isfinite(self.max_video_s) and self.max_video_s > 0):
            raise AffectlabError(f"--max-video-seconds must be above 0, got {self.max_video_s}")
        if not 0 <= self.port <= 65535:
            raise AffectlabError(f"--port must be from 0 to 65535, got {self.port}")
        check_bind(self.host, self.api_key, self.insecure)
