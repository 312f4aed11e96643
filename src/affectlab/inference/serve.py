"""HTTP service: ``POST /predict`` with an uploaded image returns the faces as JSON; ``GET /health`` the model.

The model is loaded once, when the app is created, and shared by all requests. Predictions run in a thread
pool; a lock lets one prediction run at a time, because the runtimes already use every core for one batch and
OpenCV's cascade objects must not be shared between threads. Uploads are bounded in bytes and pixels
(``http_limits``); the OpenAPI pages are off unless ``docs`` is asked for.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at runtime, and
# ``UploadFile`` is imported inside ``create_app`` to keep FastAPI an optional dependency.
import threading
from typing import Any

from affectlab.errors import AffectlabError
from affectlab.inference.http_limits import MAX_UPLOAD_BYTES, decode_upload, read_upload, without_paths
from affectlab.inference.predictor import AffectPredictor

__all__ = ["MAX_UPLOAD_BYTES", "create_app", "serve"]

def create_app(
    predictor: "AffectPredictor", max_upload_bytes: int = MAX_UPLOAD_BYTES, docs: bool = False
) -> Any:
    """A FastAPI app around an already loaded predictor."""
    try:
        from fastapi import FastAPI, Request
        from starlette.concurrency import run_in_threadpool
    except ImportError:
        raise AffectlabError("serving needs FastAPI: pip install 'affectlab[serve]'") from None

    from affectlab import __version__

    pages = {} if docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="affectlab", version=__version__, **pages)
    lock = threading.Lock()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return without_paths({"status": "ok", "affectlab_version": __version__, "detector": predictor.detector.name,
                              "model": predictor.info.to_dict()})

    def run(name: str, data: bytes) -> list[dict[str, Any]]:
        image = decode_upload(name, data)
        with lock:
            result = predictor.predict(image)
        return [{"face": i, **face.to_dict()} for i, face in enumerate(result)]  # type: ignore[union-attr]

    @app.post("/predict")
    async def predict(request: Request) -> list[dict[str, Any]]:
        """Multipart upload with the image in a field named ``file``."""
        name, data = await read_upload(request, max_upload_bytes)
        return await run_in_threadpool(run, name, data)

    return app


def serve(
    model: str, host: str = "127.0.0.1", port: int = 8000, detector: str = "auto", threads: int | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES, docs: bool = False,
) -> None:
    """Load ``model`` and serve it with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise AffectlabError("serving needs uvicorn: pip install 'affectlab[serve]'") from None
    from affectlab.inference.predictor import load

    predictor = load(model, detector=detector, batch_size=32, threads=threads)
    uvicorn.run(create_app(predictor, max_upload_bytes, docs), host=host, port=port, log_level="info")
