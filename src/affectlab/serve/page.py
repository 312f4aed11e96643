"""The web page at ``/``: photos, a live webcam and videos in a browser, built with Gradio and mounted in the service.

Every prediction goes through the service's batching queue (``predict``, the queue's submit), so the page and the
HTTP API share one predictor per process and its limits. The page works without internet: a theme with system
fonts (the default one names web fonts), no analytics, no telemetry, no update check, no server-side rendering
(it needs Node). With an API key, the page asks for that key on Gradio's login form: a browser cannot send the
API's ``Authorization`` header while it loads a page, and the key stays the one secret to hand out.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from affectlab.data.images import read_rgb
from affectlab.errors import AffectlabError
from affectlab.export.model_card import model_card_markdown
from affectlab.extras import require
from affectlab.runtime.annotate import EMOTION_COLOURS, draw_result, eye_text
from affectlab.runtime.backends import ModelInfo
from affectlab.runtime.results import FaceResult, ImageResult

__all__ = ["PHOTO_SIDE", "WEBCAM_EVERY_S", "build_page", "mount_page"]

Predict = Callable[[np.ndarray], Awaitable[ImageResult]]

#: Seconds between webcam frames sent to the server (a model call each; 4 per second keeps labels live on a CPU).
WEBCAM_EVERY_S = 0.25
#: Pixels of the longer side at which a photo is drawn and shown, faces numbered as in its table: large enough to
#: read, and drawn at the size shown, so that its labels are readable however large the upload was.
PHOTO_SIDE = 720
#: Photos analysed per upload at most (each is one queued request).
MAX_PHOTOS = 24
#: Seconds the page keeps a video's result files (JSONL, CSV) and Gradio its cached uploads and outputs.
KEEP_RESULTS_S = 3600
#: Processed video frames between refreshes of the timeline while a video is analysed.
REFRESH_FRAMES = 20

_SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
_SYSTEM_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def _offline_gradio() -> Any:
    """Gradio, imported with its analytics, telemetry and hub access off (read when it is imported)."""
    for name, value in (
        ("GRADIO_ANALYTICS_ENABLED", "False"),
        ("HF_HUB_DISABLE_TELEMETRY", "1"),
        ("HF_HUB_OFFLINE", "1"),
        ("GRADIO_SSR_MODE", "False"),
    ):
        os.environ[name] = value
    return require("gradio", "the web page", extra="serve")


def mount_page(app: Any, predictor: Any, predict: Predict, options: Any) -> None:
    """Mount the page at ``/`` of ``app`` (after the API routes, which keep precedence)."""
    from affectlab.serve.batching import QueueFull, RequestTimeout

    gr = _offline_gradio()

    async def submit(image: np.ndarray) -> ImageResult:
        try:
            return await predict(image)
        except (QueueFull, RequestTimeout) as exc:  # the page's user sees what an API client would read
            raise gr.Error(f"server busy, try again: {exc}") from None

    results_dir = Path(tempfile.mkdtemp(prefix="affectlab-page-"))
    page = build_page(submit, predictor.info, model_card_markdown(predictor.info), options.video_limits, results_dir)
    page.queue(default_concurrency_limit=16, max_size=options.max_queue)
    key = options.api_key
    auth = None if key is None else (lambda _user, password: hmac.compare_digest(password.encode(), key.encode()))
    gr.mount_gradio_app(
        app,
        page,
        path="/",
        auth=auth,
        auth_message="Enter the server's API key as the password (any user name).",
        theme=gr.themes.Default(font=_SYSTEM_FONTS, font_mono=_SYSTEM_MONO),
        footer_links=[],
        app_kwargs={"docs_url": None, "redoc_url": None, "openapi_url": None},  # the API's pages are the app's own
        ssr_mode=False,
        max_file_size=max(options.max_upload_bytes, options.max_video_bytes),
        allowed_paths=[str(results_dir)],
        show_error=True,
        pwa=False,
        mcp_server=False,
        enable_monitoring=False,
    )


def build_page(predict: Predict, info: ModelInfo, card: str, video_limits: Any, results_dir: Path) -> Any:
    """The Gradio Blocks of the page: Photos, Webcam, Video and Model card tabs."""
    gr = _offline_gradio()
    from affectlab.serve.video_stream import stream_video

    keep = (KEEP_RESULTS_S, KEEP_RESULTS_S)  # Gradio's cache: check every hour, delete what is older than an hour
    with gr.Blocks(title="affectlab", analytics_enabled=False, delete_cache=keep) as page:
        gr.Markdown(f"## affectlab: facial affect recognition\n{_model_line(info)}")
        with gr.Tab("Photos"):
            photos = gr.File(file_count="multiple", file_types=["image"], label="Photos (drop or pick one or many)")
            photo_status = gr.Markdown(elem_id="photo-status")
            found = gr.State([])

            @gr.render(inputs=found)
            def show_photos(items: list[dict[str, Any]]) -> None:
                for entry in items:
                    with gr.Row(elem_classes="photo-result", equal_height=False):
                        gr.Image(entry["annotated"], label=entry["name"], show_label=True, height=PHOTO_SIDE, scale=3)
                        with gr.Column(scale=2):
                            if entry["error"]:
                                gr.Markdown(f"**{entry['name']}**: {entry['error']}")
                            elif not entry["faces"]:
                                gr.Markdown(f"**{entry['name']}**: no face found")
                            for face in entry["faces"]:
                                if face["probs"] is None:
                                    gr.Markdown(face["title"], elem_classes="face-label")
                                    continue
                                gr.Label(
                                    face["probs"],
                                    label=face["title"],
                                    num_top_classes=len(info.class_names),
                                    elem_classes="face-label",
                                )
                            if entry["dial"] is not None:
                                gr.Plot(entry["dial"], label="valence / arousal", show_label=False)

            async def analyse_photos(paths: list[str] | None) -> tuple[list[dict[str, Any]], str]:
                paths = list(paths or [])[:MAX_PHOTOS]
                entries = await asyncio.gather(*(_photo_entry(predict, Path(p)) for p in paths))
                faces = sum(len(e["faces"]) for e in entries)
                return list(entries), f"{len(entries)} photo(s), {faces} face(s)" if entries else ""

            photos.change(analyse_photos, photos, [found, photo_status])

        with gr.Tab("Webcam"):
            with gr.Row():
                camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam", elem_id="camera")
                live = gr.Image(type="numpy", label="Live labels", elem_id="live")
            live_faces = gr.Markdown(elem_id="live-faces")

            async def annotate_frame(frame: np.ndarray | None) -> tuple[Any, str]:
                if frame is None:
                    return None, ""
                result = await predict(frame)
                return draw_result(frame, result, numbered=True, legend=False), _faces_line(result)

            camera.stream(
                annotate_frame,
                camera,
                [live, live_faces],
                stream_every=WEBCAM_EVERY_S,
                concurrency_limit=None,
                show_progress="hidden",
            )

        with gr.Tab("Video"):
            video = gr.File(file_types=["video"], label="Video file", elem_id="video-file")
            video_status = gr.Markdown(elem_id="video-status")
            timeline = gr.Plot(label="Timeline: emotions and valence/arousal per face", elem_id="timeline")
            tracks = gr.JSON(label="Tracks")
            downloads = gr.File(label="Results (JSONL and CSV)", file_count="multiple", elem_id="downloads")

            async def analyse_video(path: str | None) -> AsyncIterator[tuple[Any, ...]]:
                if not path:
                    yield "", None, None, None
                    return
                async for update in _video_updates(stream_video, predict, Path(path), video_limits, results_dir):
                    yield update

            video.upload(analyse_video, video, [video_status, timeline, tracks, downloads])

        with gr.Tab("Model card"):
            gr.Markdown(card, elem_id="model-card")
    return page


def _model_line(info: ModelInfo) -> str:
    backbone = info.extra.get("model", {}).get("backbone", "model")
    line = f"{backbone}, {info.task}, {info.preprocess.input_size} px, {info.runtime}. Nothing leaves this server."
    return line if info.note is None else f"{line}\n\n**Note: this model was {info.note}.**"


async def _photo_entry(predict: Predict, path: Path) -> dict[str, Any]:
    """One uploaded photo: its annotated copy, one probability table per face, and the V/A dial of its faces."""
    name = path.name
    try:
        image = await asyncio.to_thread(read_rgb, path)
    except AffectlabError as exc:
        return {"name": name, "annotated": None, "faces": [], "dial": None, "error": str(exc).replace(str(path), name)}
    result = await predict(image)
    faces = [{"title": _face_title(i, face), "probs": _probs(face)} for i, face in enumerate(result.faces)]
    has_va = any(face.valence is not None for face in result.faces)
    return {
        "name": name,
        "annotated": draw_result(image, result, numbered=True, fit=PHOTO_SIDE, legend=False),
        "faces": faces,
        "dial": _va_dial(result.faces) if has_va else None,
        "error": None,
    }


def _face_title(index: int, face: FaceResult) -> str:
    """``face 0: Happy 0.83 {Happy | Surprise}, V +0.10 [-0.2, +0.4] A -0.20`` (the parts the model predicts;
    the set when it holds more than one emotion, the intervals when the model is calibrated)."""
    parts = [] if face.label is None else [f"{face.label} {face.confidence:.2f}"]
    if parts and face.prediction_set is not None and len(face.prediction_set) > 1:
        parts[0] += " {" + " | ".join(face.prediction_set) + "}"
    if face.valence is not None and face.arousal is not None:
        parts.append(
            f"V {face.valence:+.2f}{_span(face.valence_interval)} A {face.arousal:+.2f}{_span(face.arousal_interval)}"
        )
    mesh = face.mesh  # affectlab serve --landmarks
    if mesh is not None:
        parts.append(
            "no mesh" if mesh.rejected else f"yaw {mesh.yaw:+.0f} pitch {mesh.pitch:+.0f} roll {mesh.roll:+.0f}"
        )
    if face.eyes is not None:  # affectlab serve --eyes
        parts.append(eye_text(face.eyes))
    return f"face {index}: " + ", ".join(parts)


def _span(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f" [{interval[0]:+.2f}, {interval[1]:+.2f}]"


def _probs(face: FaceResult) -> dict[str, float] | None:
    if face.probs is None:
        return None
    return {name: float(p) for name, p in zip(face.class_names, face.probs)}


def _faces_line(result: ImageResult) -> str:
    if not result.faces:
        return "no face"
    return "; ".join(_face_title(i, face) for i, face in enumerate(result.faces))


def _va_dial(faces: list[FaceResult]) -> Figure:
    """The circumplex: valence on x, arousal on y, a numbered dot per face in its emotion's colour."""
    fig = Figure(figsize=(2.6, 2.6), constrained_layout=True)
    ax = fig.subplots()
    ax.add_patch(_circle())
    ax.axhline(0, color="0.7", lw=0.8)
    ax.axvline(0, color="0.7", lw=0.8)
    for i, face in enumerate(faces):
        if face.valence is None or face.arousal is None:
            continue
        colour = np.asarray(EMOTION_COLOURS.get(face.label or "", (90, 90, 90))) / 255.0
        ax.scatter([face.valence], [face.arousal], s=60, color=colour, edgecolor="black", zorder=3)
        ax.annotate(str(i), (face.valence, face.arousal), xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), xlabel="valence", ylabel="arousal", aspect="equal")
    ax.tick_params(labelsize=7)
    return fig


def _circle() -> Any:
    from matplotlib.patches import Circle

    return Circle((0, 0), 1.0, fill=False, color="0.5", lw=1.0)


async def _video_updates(
    stream_video: Any, predict: Predict, path: Path, limits: Any, results_dir: Path
) -> AsyncIterator[tuple[Any, ...]]:
    """(status, timeline figure, track summary, downloads) while the video is processed, then the result files."""
    import gradio as gr
    from starlette.exceptions import HTTPException

    from affectlab.runtime.records import RecordWriter
    from affectlab.runtime.timeline import TrackLog
    from affectlab.runtime.video import video_info
    from affectlab.serve.limits import check_video

    name = path.name
    try:
        await asyncio.to_thread(check_video, path, name, limits)
    except HTTPException as exc:  # the API's answer; its detail is the one line for the user
        raise gr.Error(str(exc.detail)) from None
    fps, total = await asyncio.to_thread(video_info, path)
    log = TrackLog(fps)
    _prune(results_dir, KEEP_RESULTS_S)
    folder = Path(tempfile.mkdtemp(prefix="video-", dir=results_dir))  # one per upload: names never collide
    files = [folder / f"{Path(name).stem}.jsonl", folder / f"{Path(name).stem}.csv"]
    done = faces = 0
    with files[0].open("w", encoding="utf-8") as jsonl, files[1].open("w", encoding="utf-8", newline="") as csv:
        writers = [RecordWriter(jsonl, "jsonl"), RecordWriter(csv, "csv")]
        async for result in stream_video(predict, path, name, limits):
            for writer in writers:
                writer.write(result.records())
            log.add(result)
            done, faces = done + 1, faces + len(result)
            if result.error is not None:
                yield f"{name}: {result.error}", _figure(log), log.summary(), None
                break
            if done % REFRESH_FRAMES == 0:
                yield (
                    f"{name}: frame {done} of {total or '?'}, {faces} face(s) so far",
                    _figure(log),
                    log.summary(),
                    None,
                )
    yield f"{name}: done, {done} frame(s), {faces} face(s)", _figure(log), log.summary(), [str(f) for f in files]


def _prune(results_dir: Path, older_than_s: float) -> None:
    """Remove result folders of earlier videos (Gradio has copied what it offers into its own cache by then)."""
    cutoff = time.time() - older_than_s
    for folder in results_dir.glob("video-*"):
        if folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def _figure(log: Any) -> Figure | None:
    try:
        return log.figure()
    except ValueError:  # no face tracked yet
        return None
