"""The ``predict``, ``export`` and ``serve`` verbs of the ``affectlab`` command: parse, one API call, print.

Flags that are not given stay None here, so every default is the one in ``PredictConfig`` or ``ServeOptions``
(the help texts read it from there). Every user-caused failure (a missing model, an unknown format, a camera
that cannot be opened) is raised by the API as an ``AffectlabError`` before any work starts, so it ends as one
line and exit code 2. Per-item failures (an unreadable image, a broken video) become error records; the run
goes on and exits 1 at the end.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from affectlab.models.registry import DEFAULT_MODEL
from affectlab.runtime.settings import BACKENDS, DEFAULT_BATCH, ENGINES, PredictConfig

__all__ = ["add_commands", "cmd_export", "cmd_predict", "cmd_serve"]

#: The ``PredictConfig`` fields with a flag of their own (``--batch-size`` for ``batch_size``).
PREDICT_FLAGS = (
    "detector",
    "margin",
    "align",
    "landmarks",
    "eyes",
    "min_confidence",
    "batch_size",
    "every",
    "smooth",
    "detect_every",
    "threads",
    "engine",
    "address",
    "backend",
    "workers",
)
#: The ``ServeOptions`` fields with a flag of their own; sizes are given in MB (see ``cmd_serve``).
SERVE_FLAGS = (
    "host",
    "port",
    "workers",
    "insecure",
    "docs",
    "max_batch",
    "max_wait_ms",
    "max_queue",
    "timeout_s",
    "api_key",
    "cors_origins",
    "max_video_s",
    "max_video_frames",
)


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    _add_predict(sub.add_parser("predict", help="faces, expressions and valence/arousal in photos, video, webcam"))
    export = sub.add_parser("export", help="write a trained run as a self-describing ONNX or phone model")
    export.add_argument("run_dir", help="run folder, .pt checkpoint or named model (affectlab-base)")
    export.add_argument(
        "--format", help="onnx (default), or for phones tflite (LiteRT), executorch or coreml (each needs its extra)"
    )
    export.add_argument(
        "--out",
        help="output file (default: RUN_DIR/model.onnx or model-int8.onnx, .tflite, .pte, .mlpackage likewise; "
        "a named model: ./NAME.onnx)",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    export.add_argument("--int8", action="store_true", help="quantise to int8 (faster on CPU, slightly less exact)")
    export.add_argument("--quantization", help="static (default, calibrated) or dynamic")
    export.add_argument(
        "--calibration",
        metavar="DIR",
        help="face crops, or a run folder for its validation faces, to calibrate int8 (default: the run's own "
        "validation faces when its data is where it trained, else synthetic faces)",
    )
    export.set_defaults(handler=cmd_export)
    _add_serve(sub.add_parser("serve", help="HTTP service: POST /predict with an image, GET /health"))


def _add_predict(predict: argparse.ArgumentParser) -> None:
    default = PredictConfig()
    predict.add_argument(
        "paths",
        nargs="*",
        metavar="[MODEL] INPUT",
        help="image files, folders (recursive), video files; an optional first MODEL (run folder, .pt or .onnx "
        f"file, named model); without one, the bundled {DEFAULT_MODEL}",
    )
    predict.add_argument(
        "--model",
        "-m",
        help=f"run folder, .pt checkpoint, .onnx file or named model (default: the bundled {DEFAULT_MODEL})",
    )
    predict.add_argument("--webcam", type=int, metavar="INDEX", help="also read camera INDEX (e.g. 0); Ctrl-C stops")
    _add_detector(predict)
    predict.add_argument("--margin", type=float, help="border around faces, fraction of the box (default: model's)")
    predict.add_argument(
        "--align", action="store_true", default=None, help="level the eyes before cropping (yuface landmarks)"
    )
    predict.add_argument(
        "--landmarks",
        action="store_true",
        default=None,
        help="add FaceMesh's 468 3-D points and head pose (yaw, pitch, roll) to each face (see the landmarks page)",
    )
    predict.add_argument(
        "--eyes",
        action="store_true",
        default=None,
        help="also add iris points, eye openness, gaze and (video) blinks per track; implies --landmarks (see the eyes page)",
    )
    predict.add_argument("--out", help="results file, .jsonl or .csv (default: JSON lines on stdout)")
    predict.add_argument("--save-annotated", metavar="DIR", help="write images/videos with boxes, labels and V/A dots")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --out file or annotated files")
    predict.add_argument(
        "--batch-size", type=int, help=f"face crops per model call (default {DEFAULT_BATCH}; 1 with --webcam)"
    )
    predict.add_argument("--every", type=int, metavar="N", help=f"video: every Nth frame (default {default.every})")
    predict.add_argument(
        "--smooth", type=int, metavar="N", help=f"video: average over the last N frames (default {default.smooth})"
    )
    predict.add_argument(
        "--detect-every",
        type=int,
        metavar="N",
        help="video/webcam: detect faces on every Nth processed frame, reuse its boxes in between (default 1)",
    )
    predict.add_argument("--threads", type=int, help="model threads (default: ONNX all usable CPUs, PyTorch its own)")
    predict.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="label a face 'uncertain' when its calibrated top probability is below P (probabilities are kept)",
    )
    _add_backend(predict)
    predict.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="threads decoding and detecting the next photos while the model runs (default: the usable CPUs)",
    )
    predict.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    predict.add_argument("--shard", metavar="I/N", help="only part I (from 0) of N of the inputs, for job arrays")
    predict.add_argument(
        "--engine",
        choices=ENGINES,
        help=f"{default.engine} (default): this process; ray: a Ray Data pipeline writing --out FILE.parquet",
    )
    predict.add_argument(
        "--address",
        help="--engine ray: the Ray cluster to join ('auto': the running one; default: start Ray on this machine)",
    )
    predict.set_defaults(handler=cmd_predict)


def _add_detector(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detector",
        help=f"{PredictConfig().detector} (default: yuface if installed, else haar), yuface, haar, "
        "or none (each image is one face crop)",
    )


def _add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="runtime for a run folder or .pt: auto (default: ONNX Runtime on its ONNX export, made on first use; "
        "PyTorch on a CUDA GPU), torch or onnx",
    )


def _add_serve(serve: argparse.ArgumentParser) -> None:
    """The flags of ``affectlab serve``; their defaults are ``ServeOptions``'s, named in the help."""
    from affectlab.serve.options import MB, ServeOptions

    default = ServeOptions()
    serve.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help=f"run folder, .pt checkpoint, .onnx file or named model (default: the bundled {DEFAULT_MODEL})",
    )
    serve.add_argument("--host", help=f"address to listen on (default {default.host})")
    serve.add_argument("--port", type=int, help=f"port to listen on (default {default.port})")
    _add_detector(serve)
    serve.add_argument("--threads", type=int, help="runtime threads")
    _add_backend(serve)
    serve.add_argument(
        "--landmarks", action="store_true", default=None, help="add FaceMesh points and head pose to every face"
    )
    serve.add_argument(
        "--eyes", action="store_true", default=None, help="add iris points, eye openness and gaze to every face"
    )
    serve.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="label faces 'uncertain' below calibrated top probability P (POST /predict?min_confidence= overrides)",
    )
    upload_mb, video_mb = default.max_upload_bytes / MB, default.max_video_bytes / MB
    serve.add_argument("--max-upload-mb", type=float, help=f"largest accepted upload (default {upload_mb:g} MB)")
    serve.add_argument(
        "--docs", action="store_true", default=None, help="serve the OpenAPI pages (/docs, /openapi.json)"
    )
    serve.add_argument("--max-batch", type=int, help=f"most images per model batch (default {default.max_batch})")
    serve.add_argument(
        "--max-wait-ms", type=float, help=f"how long a batch waits to fill (default {default.max_wait_ms:g})"
    )
    serve.add_argument(
        "--max-queue", type=int, help=f"most waiting requests; more get 503 (default {default.max_queue})"
    )
    serve.add_argument(
        "--timeout",
        dest="timeout_s",
        type=float,
        help=f"seconds a request may wait; then 504 (default {default.timeout_s:g})",
    )
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $AFFECTLAB_API_KEY)")
    serve.add_argument(
        "--insecure", action="store_true", default=None, help="allow a non-loopback --host without an API key"
    )
    serve.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action="append",
        metavar="ORIGIN",
        help="let browser pages from ORIGIN call the API (repeatable; default: none)",
    )
    serve.add_argument("--max-video-mb", type=float, help=f"largest video upload (default {video_mb:g} MB)")
    serve.add_argument(
        "--max-video-seconds", dest="max_video_s", type=float, help=f"longest video (default {default.max_video_s:g} s)"
    )
    serve.add_argument("--max-video-frames", type=int, help=f"most video frames (default {default.max_video_frames})")
    serve.add_argument(
        "--workers", type=int, help=f"processes, each with its own model (default {default.workers}; >1: API only)"
    )
    serve.set_defaults(handler=cmd_serve)


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The flags among ``names`` that were given, by field name; the rest keep the config's defaults."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def cmd_predict(args: argparse.Namespace) -> int:
    from affectlab.api import predict
    from affectlab.batch.sharding import parse_shard

    summary = predict(
        args.model,
        args.inputs,
        out=args.out or sys.stdout,
        webcam=args.webcam,
        save_annotated=args.save_annotated,
        overwrite=args.overwrite,
        progress=not args.quiet,
        shard=parse_shard(args.shard) if args.shard else None,
        **_given(args, PREDICT_FLAGS),
    )
    if not args.quiet:
        _report(summary)
    return 1 if summary.errors else 0


def _report(summary: Any) -> None:
    parts = [f"{summary.items} item(s)", f"{summary.faces} face(s)", f"{summary.no_face} without a face"]
    if summary.uncertain:
        parts.append(f"{summary.uncertain} uncertain (below --min-confidence)")
    if summary.errors:
        parts.append(f"{summary.errors} error(s), first: {summary.first_error}")
    print("; ".join(parts), file=sys.stderr)
    if summary.out:
        print(f"results: {summary.out}", file=sys.stderr)
    if summary.annotated:
        print(f"annotated: {len(summary.annotated)} file(s) in {summary.annotated[0].parent}", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    from affectlab.api import export

    options = _given(args, ("format", "out", "quantization", "calibration"))
    print(f"exported: {export(args.run_dir, int8=args.int8, overwrite=args.overwrite, **options)}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from affectlab.api import serve
    from affectlab.serve.options import MB

    sizes = _given(args, ("max_upload_mb", "max_video_mb"))  # the flags are MB, the options bytes
    sizes = {f"{name[:-3]}_bytes": mb * MB for name, mb in sizes.items()}
    predict_flags = ("detector", "threads", "landmarks", "eyes", "min_confidence", "backend")
    serve(args.model, **_given(args, (*predict_flags, *SERVE_FLAGS)), **sizes)
    return 0
