"""The ``predict``, ``export`` and ``serve`` verbs of the ``affectlab`` command.

Every user-caused failure (a missing model, an unknown format, a camera that cannot be opened) is raised as an
``AffectlabError`` before any work starts, so it ends as one line and exit code 2. Per-item failures (an
unreadable image, a broken video) become error records; the run goes on and exits 1 at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from affectlab.errors import AffectlabError

__all__ = ["add_commands", "cmd_export", "cmd_predict", "cmd_serve"]


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    predict = sub.add_parser("predict", help="faces, expressions and valence/arousal in photos, folders, video, webcam")
    predict.add_argument("model", metavar="MODEL", help="run folder, .pt checkpoint or .onnx file")
    predict.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders (recursive), video files")
    predict.add_argument("--webcam", type=int, metavar="INDEX", help="also read camera INDEX (e.g. 0); Ctrl-C stops")
    predict.add_argument(
        "--detector",
        default="auto",
        help="auto (default: yuface if installed, else haar), yuface, haar, or none (each image is one face crop)",
    )
    predict.add_argument("--margin", type=float, help="border around faces, fraction of the box (default: model's)")
    predict.add_argument("--align", action="store_true", help="level the eyes before cropping (yuface landmarks)")
    predict.add_argument("--out", help="results file, .jsonl or .csv (default: JSON lines on stdout)")
    predict.add_argument("--save-annotated", metavar="DIR", help="write images/videos with boxes, labels and V/A dots")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --out file or annotated files")
    predict.add_argument("--batch-size", type=int, help="face crops per model call (default 32; 1 with --webcam)")
    predict.add_argument("--every", type=int, default=1, metavar="N", help="video: process every Nth frame")
    predict.add_argument("--smooth", type=int, default=1, metavar="N", help="video: average over the last N frames")
    predict.add_argument("--threads", type=int, help="model threads (default: ONNX all usable CPUs, PyTorch its own)")
    predict.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="label a face 'uncertain' when its calibrated top probability is below P (probabilities are kept)",
    )
    predict.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    predict.add_argument("--shard", metavar="I/N", help="only part I (from 0) of N of the inputs, for job arrays")
    predict.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local (default): this process; ray: a Ray Data pipeline writing --out FILE.parquet",
    )
    predict.add_argument(
        "--address",
        help="--engine ray: the Ray cluster to join ('auto': the running one; default: start Ray on this machine)",
    )
    predict.set_defaults(handler=cmd_predict)

    export = sub.add_parser("export", help="write a trained run as a self-describing ONNX model")
    export.add_argument("run_dir", help="run folder or .pt checkpoint")
    export.add_argument("--format", default="onnx", help="export format (onnx)")
    export.add_argument("--out", help="output file (default: RUN_DIR/model.onnx or model-int8.onnx)")
    export.add_argument("--int8", action="store_true", help="quantise to int8 (faster on CPU, slightly less exact)")
    export.add_argument("--quantization", default="static", help="static (default, calibrated) or dynamic")
    export.add_argument("--calibration", metavar="DIR", help="face crops to calibrate int8 (default: synthetic faces)")
    export.set_defaults(handler=cmd_export)

    serve = sub.add_parser("serve", help="HTTP service: POST /predict with an image, GET /health")
    serve.add_argument("model", metavar="MODEL", help="run folder, .pt checkpoint or .onnx file")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--detector", default="auto", help="auto (default), yuface, haar or none")
    serve.add_argument("--threads", type=int, help="runtime threads")
    serve.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload (default 20 MB)")
    serve.add_argument("--docs", action="store_true", help="serve the OpenAPI pages (/docs, /openapi.json)")
    serve.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="label faces 'uncertain' below calibrated top probability P (POST /predict?min_confidence= overrides)",
    )
    serve.add_argument("--max-batch", type=int, default=32, help="most images per model batch (1: one at a time)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits to fill (default 5)")
    serve.add_argument("--max-queue", type=int, default=256, help="most waiting requests; more get 503 (default 256)")
    serve.add_argument("--timeout", type=float, default=30.0, help="seconds a request may wait; then 504 (default 30)")
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $AFFECTLAB_API_KEY)")
    serve.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without an API key")
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let browser pages from ORIGIN call the API (repeatable; default: none)",
    )
    _add_serve_scaling(serve)
    serve.set_defaults(handler=cmd_serve)


def _add_serve_scaling(serve: argparse.ArgumentParser) -> None:
    """Video limits and worker processes of ``affectlab serve``."""
    serve.add_argument("--max-video-mb", type=float, default=200.0, help="largest video upload (default 200 MB)")
    serve.add_argument("--max-video-seconds", type=float, default=600.0, help="longest video (default 600 s)")
    serve.add_argument("--max-video-frames", type=int, default=18000, help="most video frames (default 18000)")
    serve.add_argument(
        "--workers", type=int, default=1, help="processes, each with its own model (default 1; >1: API only, no page)"
    )


def cmd_predict(args: argparse.Namespace) -> int:
    from affectlab.atomic import atomic_write
    from affectlab.runtime.faces import make_detector
    from affectlab.runtime.pipeline import (
        PredictOptions,
        estimate_items,
        open_cameras,
        plan_annotations,
        run_predictions,
    )
    from affectlab.runtime.predictor import load
    from affectlab.runtime.records import RecordWriter, output_format
    from affectlab.runtime.sources import expand_inputs

    _check_predict_args(args)
    if args.out:
        _check_writable(Path(args.out), args.overwrite)
    fmt = output_format(args.out) if args.out and args.engine == "local" else "jsonl"
    detector = make_detector(args.detector)
    sources = expand_inputs(args.inputs, args.webcam)
    if not sources:
        raise AffectlabError("no images or videos found in the given inputs")
    if args.shard:
        from affectlab.batch.sharding import parse_shard, take_shard

        sources = take_shard(sources, *parse_shard(args.shard))
    if args.engine == "ray":
        from affectlab.batch.ray_engine import cmd_predict_ray

        return cmd_predict_ray(args, sources)
    if args.save_annotated:
        _check_annotated(
            Path(args.save_annotated), plan_annotations(sources, Path(args.save_annotated)), args.overwrite
        )
    if not args.verbose:
        _quiet_opencv()
    cameras = open_cameras(sources)
    batch = args.batch_size or (1 if args.webcam is not None else 32)
    predictor = load(
        args.model,
        detector=detector,
        batch_size=batch,
        margin=args.margin,
        threads=args.threads,
        align=args.align,
        min_confidence=args.min_confidence,
    )
    options = PredictOptions(args.every, args.smooth, Path(args.save_annotated) if args.save_annotated else None)

    def run(stream: Any) -> Any:
        with _progress(args.quiet, estimate_items(sources, args.every)) as advance:
            return run_predictions(predictor, sources, RecordWriter(stream, fmt), options, cameras, advance)

    if args.out:
        box: dict[str, Any] = {}

        def write(tmp: Path) -> None:
            with tmp.open("w", encoding="utf-8", newline="") as stream:
                box["summary"] = run(stream)

        atomic_write(args.out, write)
        summary = box["summary"]
    else:
        summary = run(sys.stdout)
    if not args.quiet:
        _report(summary, args.out)
    return 1 if summary.errors else 0


def _check_predict_args(args: argparse.Namespace) -> None:
    if not args.inputs and args.webcam is None:
        raise AffectlabError("predict: give at least one INPUT (image, folder or video) or --webcam INDEX")
    if args.shard and args.webcam is not None:
        raise AffectlabError("--shard splits files between jobs; it cannot be used with --webcam")
    if args.shard:
        from affectlab.batch.sharding import parse_shard

        parse_shard(args.shard)
    if args.engine == "ray":
        if not args.out or Path(args.out).suffix.lower() != ".parquet":
            raise AffectlabError("--engine ray writes a Parquet file: give --out FILE.parquet")
        if args.webcam is not None or args.save_annotated:
            raise AffectlabError("--engine ray scores image files; --webcam and --save-annotated need the local engine")
    elif args.address:
        raise AffectlabError("--address is for --engine ray")
    for name in ("batch_size", "every", "smooth", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise AffectlabError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.margin is not None and not 0 <= args.margin <= 2:
        raise AffectlabError(f"--margin must be between 0 and 2, got {args.margin}")
    from affectlab.runtime.predictor import check_min_confidence

    check_min_confidence(args.min_confidence)


def _check_writable(out: Path, overwrite: bool) -> None:
    """Before any work: ``--out`` must be a file name in a folder that can be written, and new unless replaced."""
    if out.is_dir():
        raise AffectlabError(f"{out}: is a folder; --out takes a file name ending in .jsonl or .csv")
    if out.exists() and not overwrite:
        raise AffectlabError(f"{out}: exists; pass --overwrite to replace it")
    folder = out.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise AffectlabError(f"{out}: cannot be written ({folder} is not a writable folder)")


def _check_annotated(folder: Path, plan: dict[str, Path], overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise AffectlabError(f"{folder}: --save-annotated needs a folder, and this is a file")
    existing = [target for target in plan.values() if target.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise AffectlabError(f"{existing[0]}: exists{more}; pass --overwrite to replace annotated files")


def _quiet_opencv() -> None:
    """OpenCV and FFmpeg print their own warnings for every broken file; our records already say it in one line."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _progress(quiet: bool, total: int | None) -> Any:
    """A context giving ``advance()``: a rich progress bar with items per second on stderr, or a no-op."""
    if quiet:
        return nullcontext(lambda: None)
    from contextlib import contextmanager

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class _Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed or 0:.1f} items/s")

    @contextmanager
    def bar() -> Any:
        columns = [TextColumn("predict"), BarColumn(), MofNCompleteColumn(), _Rate(), TimeElapsedColumn()]
        with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
            task = progress.add_task("predict", total=total)
            yield lambda: progress.advance(task)

    return bar()


def _report(summary: Any, out: str | None) -> None:
    parts = [f"{summary.items} item(s)", f"{summary.faces} face(s)", f"{summary.no_face} without a face"]
    if summary.uncertain:
        parts.append(f"{summary.uncertain} uncertain (below --min-confidence)")
    if summary.errors:
        parts.append(f"{summary.errors} error(s), first: {summary.first_error}")
    print("; ".join(parts), file=sys.stderr)
    if out:
        print(f"results: {out}", file=sys.stderr)
    if summary.annotated:
        print(f"annotated: {len(summary.annotated)} file(s) in {summary.annotated[0].parent}", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    from affectlab.export.onnx import export_model

    path = export_model(args.run_dir, args.format, args.out, args.int8, args.quantization, args.calibration)
    print(f"exported: {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from affectlab.serve.access import api_key_from, check_bind
    from affectlab.serve.app import ServeOptions, serve

    if not args.max_upload_mb > 0:
        raise AffectlabError(f"--max-upload-mb must be above 0, got {args.max_upload_mb}")
    options = ServeOptions(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        docs=args.docs,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        timeout_s=args.timeout,
        api_key=api_key_from(args.api_key),
        cors_origins=args.cors_origin,
        max_video_bytes=int(args.max_video_mb * 1024 * 1024),
        max_video_s=args.max_video_seconds,
        max_video_frames=args.max_video_frames,
        min_confidence=args.min_confidence,
    )
    options.check()
    check_bind(args.host, options.api_key, args.insecure)
    logging.getLogger("affectlab").setLevel(logging.INFO)
    serve(
        args.model,
        host=args.host,
        port=args.port,
        detector=args.detector,
        threads=args.threads,
        options=options,
        workers=args.workers,
    )
    return 0
