"""HTTP service: ``POST /predict`` with an uploaded image returns the faces as JSON; ``GET /health`` the model.

The model is loaded once, when the app is created, and shared by all requests. Uploads are read and decoded
concurrently, bounded in bytes and pixels (``http_limits``); the decoded images then wait in a bounded queue and
are predicted in batches by one worker thread (``batching``), since a batch of crops costs far less than single
calls and the runtimes already use every core for one batch. A full queue answers 503 with ``Retry-After``, a
request not answered in time 504. An API key, CORS (``http_access``), Prometheus metrics at ``/metrics`` and one
JSON log line per request (``http_metrics``) are set up here too. The OpenAPI pages are off unless ``docs`` is
asked for. ``POST /predict/video`` streams NDJSON records through the same queue (``video_stream``), and the web
page at ``/`` (``web_page``, Gradio) reaches the predictor through it too: one predictor per process.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at runtime, and
# ``UploadFile`` is imported inside ``create_app`` to keep FastAPI an optional dependency.
import contextlib
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any

from affectlab.errors import AffectlabError
from affectlab.extras import require
from affectlab.runtime.predictor import AffectPredictor
from affectlab.serve.limits import (
    MAX_UPLOAD_BYTES,
    MAX_VIDEO_BYTES,
    VideoLimits,
    check_video,
    decode_upload,
    read_upload,
    without_paths,
)

__all__ = ["MAX_UPLOAD_BYTES", "ServeOptions", "create_app", "serve"]


@dataclass
class ServeOptions:
    """How the service batches, limits and guards requests (the ``affectlab serve`` options).

    ``max_batch=1`` serves one image at a time, as the service did before batching.
    """

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
    min_confidence: float | None = None  # label faces below it "uncertain"; per request: ?min_confidence=

    @property
    def video_limits(self) -> VideoLimits:
        return VideoLimits(self.max_video_s, self.max_video_frames)

    def check(self) -> None:
        """Refuse values that cannot work, with one line naming the option."""
        for name, value, low in (("--max-batch", self.max_batch, 1), ("--max-queue", self.max_queue, 1)):
            if value < low:
                raise AffectlabError(f"{name} must be at least {low}, got {value}")
        for name, number in (("--max-wait-ms", self.max_wait_ms), ("--timeout", self.timeout_s)):
            if not (math.isfinite(number) and number >= 0):
                raise AffectlabError(f"{name} must be a number of 0 or more, got {number}")
        if not self.max_upload_bytes > 0:
            raise AffectlabError(f"--max-upload-mb must be above 0, got {self.max_upload_bytes / 1024 / 1024:g}")
        if not self.max_video_bytes > 0:
            raise AffectlabError(f"--max-video-mb must be above 0, got {self.max_video_bytes / 1024 / 1024:g}")
        if self.max_video_frames < 1:
            raise AffectlabError(f"--max-video-frames must be at least 1, got {self.max_video_frames}")
        if not (math.isfinite(self.max_video_s) and self.max_video_s > 0):
            raise AffectlabError(f"--max-video-seconds must be above 0, got {self.max_video_s}")
        if self.min_confidence is not None and not 0 <= self.min_confidence <= 1:
            raise AffectlabError(f"--min-confidence must be a probability between 0 and 1, got {self.min_confidence}")


def create_app(predictor: "AffectPredictor", options: ServeOptions | None = None) -> Any:
    """A FastAPI app around an already loaded predictor."""
    require("fastapi", "serving", extra="serve")
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    from affectlab.serve.access import add_access_control
    from affectlab.serve.batching import BatchQueue, QueueFull, RequestTimeout
    from affectlab.serve.metrics import ServiceMetrics
    from affectlab.version import __version__

    options = options or ServeOptions()
    options.check()

    def run_batch(images: list[Any]) -> list[Any]:
        return predictor.predict(images)  # type: ignore[return-value]

    queue = BatchQueue(run_batch, options.max_batch, options.max_wait_ms / 1000, options.max_queue, options.timeout_s)
    metrics = ServiceMetrics(lambda: queue.depth)
    queue.on_batch = metrics.batch_size.observe

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        await queue.start()
        yield
        await queue.stop()

    pages: dict[str, Any] = {} if options.docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="affectlab", version=__version__, lifespan=lifespan, **pages)
    app.state.queue = queue

    @app.get("/health")
    def health() -> dict[str, Any]:
        return without_paths(
            {
                "status": "ok",
                "affectlab_version": __version__,
                "detector": predictor.detector.name,
                "model": predictor.info.to_dict(),
            }
        )

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/predict")
    async def predict(request: Request, min_confidence: float | None = None) -> Any:
        """Multipart upload with the image in a field named ``file``; ``min_confidence`` labels faces below that
        calibrated top probability ``uncertain`` (default: the service's ``--min-confidence``)."""
        threshold = options.min_confidence if min_confidence is None else min_confidence
        if threshold is not None and not 0 <= threshold <= 1:
            return JSONResponse({"detail": f"min_confidence must be between 0 and 1, got {threshold}"}, 422)
        try:
            queue.check_room()  # refuse before reading the upload: an overloaded server should not decode more
            with queue.expecting():
                name, data = await read_upload(request, options.max_upload_bytes)
                image = await run_in_threadpool(decode_upload, name, data)
            result = await queue.submit(image)
        except QueueFull as exc:
            return JSONResponse({"detail": f"server busy: {exc}"}, status_code=503, headers={"Retry-After": "1"})
        except RequestTimeout as exc:
            return JSONResponse({"detail": f"prediction timed out: {exc}"}, status_code=504)
        chosen = [replace(face, min_confidence=threshold) for face in result]
        faces = [{"face": i, **face.to_dict()} for i, face in enumerate(chosen)]
        request.state.faces = len(faces)
        metrics.faces.inc(len(faces))
        return JSONResponse(faces)  # plain JSON values already: no re-encoding by FastAPI

    @app.post("/predict/video")
    async def predict_video(request: Request, every: int = 1, smooth: int = 1) -> Any:
        """Multipart upload with the video in ``file``; NDJSON records (as ``affectlab predict``) as frames finish."""
        from fastapi import HTTPException

        from affectlab.serve.video_stream import stream_video

        if every < 1 or smooth < 1:
            raise HTTPException(400, f"every and smooth must be at least 1, got every={every}, smooth={smooth}")
        try:
            queue.check_room()
        except QueueFull as exc:
            return JSONResponse({"detail": f"server busy: {exc}"}, status_code=503, headers={"Retry-After": "1"})
        name, data = await read_upload(request, options.max_video_bytes)
        path = await run_in_threadpool(_save_temporary, data, name)
        try:
            await run_in_threadpool(check_video, path, name, options.video_limits)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

        async def records() -> AsyncIterator[bytes]:
            try:
                results = stream_video(queue.submit, path, name, options.video_limits, every, smooth)
                async for result in results:
                    metrics.faces.inc(len(result))
                    for record in result.records():
                        yield (json.dumps(record, allow_nan=False) + "\n").encode()
            except (QueueFull, RequestTimeout) as exc:  # the headers are gone: the stream ends with an error record
                yield (json.dumps({"source": name, "error": f"stopped: {exc}"}) + "\n").encode()
            finally:
                path.unlink(missing_ok=True)

        return StreamingResponse(records(), media_type="application/x-ndjson")

    api_paths = frozenset({"/health", "/metrics", "/predict", "/predict/video"})
    if options.page:
        from affectlab.serve.page import mount_page

        mount_page(app, predictor, queue.submit, options)
        guarded = api_paths | ({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"} if options.docs else set())
        add_access_control(app, options.api_key, options.cors_origins, guarded=guarded)
    else:

        @app.get("/")
        def no_page() -> dict[str, str]:
            return {"detail": "the web page is served with --workers 1 only; this server answers the HTTP API"}

        add_access_control(app, options.api_key, options.cors_origins)
    app.middleware("http")(metrics.middleware(api_paths | {"/"}))
    return app


def _save_temporary(data: bytes, name: str) -> Path:
    """An uploaded video in a private temporary file (OpenCV decodes from paths); the caller removes it."""
    suffix = PurePath(name).suffix[:8] if PurePath(name).suffix.isascii() else ""
    fd, tmp = tempfile.mkstemp(prefix="affectlab-video-", suffix=suffix)
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)
    return Path(tmp)


def _log_requests_as_json() -> None:
    """Request lines go to stderr as bare JSON (one object a line), whatever the root logger's format."""
    from affectlab.serve.metrics import REQUEST_LOG

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    REQUEST_LOG.handlers[:] = [handler]
    REQUEST_LOG.setLevel(logging.INFO)
    REQUEST_LOG.propagate = False


#: Where ``serve`` hands its settings to worker processes (``--workers``), as JSON.
_WORKER_ENV = "AFFECTLAB_SERVE_WORKER"


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    detector: str = "auto",
    threads: int | None = None,
    options: ServeOptions | None = None,
    workers: int = 1,
) -> None:
    """Load ``model`` and serve it with uvicorn until interrupted.

    With ``workers`` above 1, uvicorn starts that many processes on the one port, each loading its own predictor
    (and queue) from the settings passed in ``$AFFECTLAB_SERVE_WORKER``; each runtime gets ``cores / workers``
    threads unless ``threads`` is given. The web page is then off: Gradio keeps a page's session in the process
    that served it, and the workers share connections at random. ``/metrics`` counts the process that answers.
    """
    uvicorn = require("uvicorn", "serving", extra="serve")

    options = options or ServeOptions()
    options.check()
    if workers < 1:
        raise AffectlabError(f"--workers must be at least 1, got {workers}")
    if workers > 1:
        from affectlab.runtime.backends import default_threads

        cores = default_threads()
        if workers > cores:
            logging.getLogger("affectlab").warning(
                "--workers %d on %d CPU(s): the workers will compete for cores", workers, cores
            )
        settings = {
            "model": model,
            "detector": detector,
            "threads": threads or max(1, cores // workers),
            "options": {**options.__dict__, "page": False},
        }
        os.environ[_WORKER_ENV] = json.dumps(settings)
        uvicorn.run(
            f"{__name__}:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="info",
            access_log=False,
        )
        return
    from affectlab.runtime.predictor import load

    predictor = load(
        model,
        detector=detector,
        batch_size=max(32, options.max_batch),
        threads=threads,
        min_confidence=options.min_confidence,
    )
    app = create_app(predictor, options)
    _log_requests_as_json()
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


def app_from_environment() -> Any:
    """The app of one ``--workers`` process: the model loaded here, from the settings ``serve`` left."""
    from affectlab.runtime.predictor import load

    settings = json.loads(os.environ[_WORKER_ENV])
    options = ServeOptions(**settings["options"])
    predictor = load(
        settings["model"],
        detector=settings["detector"],
        batch_size=max(32, options.max_batch),
        threads=settings["threads"],
        min_confidence=options.min_confidence,
    )
    _log_requests_as_json()
    return create_app(predictor, options)
