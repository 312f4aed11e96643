"""Bounded request reading and path-free responses for the HTTP service.

An upload is refused by its declared ``Content-Length`` before any of its body is read, and its bytes are counted
as they stream in, so nothing over the limit is ever received in full or stored (a chunked upload has no declared
length). The image is then bounded by its header's pixel count before it is decoded (``decode_rgb``). A video is
bounded in bytes the same way, then by the duration and frame count in its header before any frame is decoded, and
again while it is decoded (a header can lie). Every malformed request ends in a 4xx with one line; responses never
carry the server's absolute paths.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from affectlab.data.images import decode_rgb
from affectlab.errors import AffectlabError
from affectlab.serve.options import MAX_UPLOAD_BYTES, MB, VideoLimits

__all__ = [
    "check_video",
    "decode_upload",
    "read_upload",
    "without_paths",
]


def check_video(path: Path, name: str, limits: VideoLimits) -> None:
    """Refuse a video that OpenCV cannot open (400) or whose header is over ``limits`` (413), before decoding it."""
    import cv2
    from starlette.exceptions import HTTPException

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise HTTPException(400, f"{name}: cannot open video (corrupt, or not a video OpenCV can decode)")
        fps, frames = cap.get(cv2.CAP_PROP_FPS) or 0.0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    why = limits.exceeded(max(0, frames - 1), (frames - 1) / fps if fps > 0 and frames else None)
    if why is not None:
        raise HTTPException(413, f"{name}: video has {frames} frames at {fps:g} fps, {why}")


def _too_large(max_bytes: int) -> Any:
    from starlette.exceptions import HTTPException

    return HTTPException(413, f"upload larger than {max_bytes / MB:g} MB")


async def read_upload(request: Any, max_bytes: int = MAX_UPLOAD_BYTES, field: str = "file") -> tuple[str, bytes]:
    """The (file name, bytes) of the multipart ``field`` of ``request``, reading at most ``max_bytes`` of body."""
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise HTTPException(400, "invalid Content-Length header")
        if int(declared) > max_bytes:
            raise _too_large(max_bytes)  # the body is never read
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(415, f"send the image as multipart/form-data in a field named {field!r}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=8)  # malformed multipart: 400
    try:
        upload = form.get(field)
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, f"no file in a form field named {field!r}")
        return PurePath(upload.filename or "upload").name or "upload", await upload.read()
    finally:
        await form.close()


def decode_upload(name: str, data: bytes) -> np.ndarray:
    """The uploaded image as RGB uint8, bounded in pixels before decoding; a bad image is a 400."""
    from starlette.exceptions import HTTPException

    try:
        return decode_rgb(data, name)
    except AffectlabError as exc:
        raise HTTPException(400, str(exc)) from None


def without_paths(value: Any) -> Any:
    """``value`` with every absolute file path replaced by its file name, for responses to clients."""
    if isinstance(value, dict):
        return {k: without_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_paths(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return PurePath(value).name
    return value
