"""HTTP service: ``POST /predict`` with an uploaded image returns the faces as JSON; ``GET /health`` the model.

The model is loaded once, when the app is created, and shared by all requests. Requests run in FastAPI's
thread pool; a lock lets one prediction run at a time, because the runtimes already use every core for one
batch and OpenCV's cascade objects must not be shared between threads.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at runtime, and
# ``UploadFile`` is imported inside ``create_app`` to keep FastAPI an optional dependency.
import threading
from typing import Any

import cv2
import numpy as np

from affectlab.errors import AffectlabError
from affectlab.inference.predictor import AffectPredictor

__all__ = ["MAX_UPLOAD_BYTES", "create_app", "serve"]

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def create_app(predictor: "AffectPredictor") -> Any:
    """A FastAPI app around an already loaded predictor."""
    try:
        from fastapi import FastAPI, File, HTTPException, UploadFile
    except ImportError:
        raise AffectlabError("serving needs FastAPI: pip install 'affectlab[serve]'") from None

    from affectlab import __version__

    app = FastAPI(title="affectlab", version=__version__)
    lock = threading.Lock()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "affectlab_version": __version__, "detector": predictor.detector.name,
                "model": predictor.info.to_dict()}

    @app.post("/predict")
    def predict(file: UploadFile = File(...)) -> list[dict[str, Any]]:  # noqa: B008 - FastAPI's idiom
        data = file.file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"image larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if image is None:
            raise HTTPException(400, f"{file.filename or 'upload'}: not a readable image")
        with lock:
            result = predictor.predict(image, channels="bgr")
        return [{"face": i, **face.to_dict()} for i, face in enumerate(result)]  # type: ignore[union-attr]

    return app


def serve(
    model: str, host: str = "127.0.0.1", port: int = 8000, detector: str = "auto", threads: int | None = None
) -> None:
    """Load ``model`` and serve it with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise AffectlabError("serving needs uvicorn: pip install 'affectlab[serve]'") from None
    from affectlab.inference.predictor import load

    predictor = load(model, detector=detector, batch_size=32, threads=threads)
    uvicorn.run(create_app(predictor), host=host, port=port, log_level="info")
