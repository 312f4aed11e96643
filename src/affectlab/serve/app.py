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
import errno
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from pathlib import Path, PurePath
from typing import Any

from affectlab.errors import AffectlabError
from affectlab.extras import require
from affectlab.models.registry import resolve_model
from affectlab.runtime.predictor import AffectPredictor, load_for
from affectlab.runtime.settings import PredictConfig, split_options
from affectlab.serve.access import api_key_from
from affectlab.serve.limits import check_video, decode_upload, read_upload, without_paths
from affectlab.serve.options import MAX_UPLOAD_BYTES, ServeOptions

__all__ = ["MAX_UPLOAD_BYTES", "NOTE_HEADER", "ServeOptions", "create_app", "serve", "serve_model"]

#: Response header of /predict and /predict/video with the model's note (``ModelInfo.note``), where it has one.
NOTE_HEADER = "X-Affectlab-Note"


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

    # A model that must not be trusted on photos (the demo's) says so beside every result, in a header, as the
    # results themselves are a plain list of faces.
    note = {NOTE_HEADER: predictor.info.note} if predictor.info.note else {}

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
        threshold = predictor.min_confidence if min_confidence is None else min_confidence
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
        return JSONResponse(faces, headers=note)  # plain JSON values already: no re-encoding by FastAPI

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

        return StreamingResponse(records(), media_type="application/x-ndjson", headers=note)

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


def serve(model: str | Path | None = None, *, config: PredictConfig | None = None, **options: Any) -> None:
    """Serve a model over HTTP until interrupted: ``POST /predict`` (an image), ``POST /predict/video``,
    ``GET /health``, ``GET /metrics`` and the web page at ``/``.

    This is ``affectlab.serve`` (and ``affectlab.api.serve``).

    Args:
        model: a run folder, a ``.pt`` checkpoint, a ``.onnx`` file or a named model (None: the bundled
            ``affectlab-base``).
        config: prediction settings (detector, crop, threads); the ``PredictConfig`` fields among ``options``
            override it.
        options: ``PredictConfig`` fields and ``ServeOptions`` fields (``host``, ``port``, ``workers``,
            ``api_key``, ``max_batch``, ``max_upload_bytes``, ...). Without ``api_key``, ``$AFFECTLAB_API_KEY``
            is used where it is set.

    Raises:
        AffectlabError: before the model loads, for a bad option or a public bind without a key; once it has
            loaded, for a port already in use.

    Example:
        >>> affectlab.serve("runs/best/model.onnx", port=8080, detector="haar", max_batch=16)
    """
    predict_options, serve_options = split_options(options, PredictConfig, ServeOptions)
    serve_options["api_key"] = api_key_from(serve_options.get("api_key"))
    settings = ServeOptions(**serve_options)
    config = replace(config, **predict_options) if config is not None else PredictConfig(**predict_options)
    if config.detect_every != 1:  # the service predicts each frame as a request of its own, through its queue
        raise AffectlabError("detect_every is for predict; the service detects faces on every frame it is sent")
    serve_model(model, config, settings)


def serve_model(model: str | Path | None, config: PredictConfig, options: ServeOptions) -> None:
    """``serve`` with its settings made: load the model and run uvicorn until interrupted.

    The model is loaded first (a bad model fails before anything listens), then the port is bound here, so a port
    in use is one line and not uvicorn's log. With ``options.workers`` above 1, uvicorn starts that many processes
    on the one port, each loading its own predictor (and queue) from the settings passed in
    ``$AFFECTLAB_SERVE_WORKER``; each runtime gets ``cores / workers`` threads unless ``threads`` is given. The web
    page is then off: Gradio keeps a page's session in the process that served it, and the workers share
    connections at random. ``/metrics`` counts the process that answers.
    """
    uvicorn = require("uvicorn", "serving", extra="serve")
    from affectlab.export.runtime_model import model_for_backend

    # Resolved once here for all workers: a named model's file is checked, a run folder's ONNX export made.
    given = resolve_model(model)
    model = model_for_backend(given, config.backend)
    if options.workers > 1:
        from affectlab.runtime.backends import default_threads

        cores = default_threads()
        if options.workers > cores:
            logging.getLogger("affectlab").warning(
                "--workers %d on %d CPU(s): the workers will compete for cores", options.workers, cores
            )
        threads = config.threads or max(1, cores // options.workers)
        settings = {
            "model": str(model),
            "source": str(given),
            "config": asdict(replace(config, threads=threads)),
            "options": asdict(replace(options, page=False)),
        }
        _listen(options.host, options.port).close()  # uvicorn binds it again in a moment, for its workers
        os.environ[_WORKER_ENV] = json.dumps(settings)
        logging.getLogger("affectlab").setLevel(logging.INFO)
        uvicorn.run(
            f"{__name__}:app_from_environment",
            factory=True,
            workers=options.workers,
            host=options.host,
            port=options.port,
            log_level="info",
            access_log=False,
        )
        return
    batch = max(config.batch_for(False), options.max_batch)
    app = create_app(load_for(model, config, batch_size=batch, source=given), options)
    listening = _listen(options.host, options.port)
    _log_requests_as_json()
    logging.getLogger("affectlab").setLevel(logging.INFO)
    server = uvicorn.Server(
        uvicorn.Config(app, host=options.host, port=options.port, log_level="info", access_log=False)
    )
    server.run(sockets=[listening])


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` as uvicorn binds it, or one line saying why it cannot be."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AffectlabError(
                f"{host}:{port} is already in use; stop what listens there or choose another --port"
            ) from None
        raise AffectlabError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


def app_from_environment() -> Any:
    """The app of one ``--workers`` process: the model loaded here, from the settings ``serve`` left."""
    settings = json.loads(os.environ[_WORKER_ENV])
    options = ServeOptions(**settings["options"])
    config = PredictConfig(**settings["config"])
    batch = max(config.batch_for(False), options.max_batch)
    predictor = load_for(settings["model"], config, batch_size=batch, source=settings.get("source"))
    _log_requests_as_json()
    return create_app(predictor, options)
