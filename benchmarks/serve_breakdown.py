"""Where one ``POST /predict`` spends its time: the service's stages timed one by one, in this process.

Each stage is the service's own code on real uploads (affectnet-3999 test crops for ``--detector none``,
640x480 scenes with two faces for a detector, as ``serve_load.py`` sends them), timed over ``--repeat`` requests:
reading the multipart body (``read_upload`` on a real ASGI request), decoding (``decode_upload``), the detector
(``detect``), cropping, the model one crop per call (the one-at-a-time server) and in batches of 32 (per face, the
batched server at its best), building the results, and rendering the JSON response. ``rest`` is what the rest of
a request costs (HTTP and ASGI, middleware, threads handing work over, the runtimes' threads waking): a real
``affectlab serve --max-batch 1`` answering one client at a time, its server CPU seconds per request (from
``/proc``) less the stages above; ``client`` is the CPU the httpx client in this process spends
per request. The last lines give the share of a request's CPU that batching cannot remove and the ceiling on the
batched server's throughput over the one-at-a-time one that follows when the CPU is the limit (clients included,
since ``serve_load.py`` runs them on the same cores), and the ceiling if batching made the model free. CPU time,
not wall time, is measured, so other jobs on a shared machine slow the stages less than they slow a clock.

    python benchmarks/serve_breakdown.py [--repeat 200] [--detectors none,haar]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import DEFAULT_DATA, build_run, make_scenes, split_paths
from serve_load import cpu_seconds, server


def _per_call_ms(fn: Callable[[int], Any], n: int) -> float:
    """Mean CPU milliseconds of ``fn(i)`` over ``n`` calls (process time: other jobs on the machine do not count)."""
    fn(0)
    start = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - start) * 1000 / n


def _multipart(data: bytes) -> tuple[dict[str, str], bytes]:
    request = httpx.Request("POST", "http://x/predict", files={"file": ("image.jpg", data, "image/jpeg")})
    return dict(request.headers), request.read()


def _read(headers: dict[str, str], body: bytes) -> tuple[str, bytes]:
    from starlette.requests import Request

    from affectlab.serve.limits import read_upload

    scope = {
        "type": "http",
        "method": "POST",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return asyncio.run(read_upload(Request(scope, receive)))


def stages(model: Path, detector: str, uploads: list[bytes], repeat: int) -> dict[str, float]:
    """CPU ms per request of each in-process stage (model stages per face)."""
    from fastapi.responses import JSONResponse

    from affectlab.runtime.faces import crop_faces
    from affectlab.runtime.predictor import load
    from affectlab.serve.limits import decode_upload

    predictor = load(str(model), detector=detector, batch_size=32)
    size, margin = predictor.info.preprocess.input_size, predictor.margin
    bodies = [_multipart(u) for u in uploads[:repeat]]
    images = [decode_upload("image.jpg", u) for u in uploads[:repeat]]
    found = [predictor.detector.detect(im) for im in images]
    crops = [crop_faces(im, f, size, margin, False) for im, f in zip(images, found, strict=True)]
    faces_per_request = sum(len(f) for f in found) / len(found)
    flat = np.concatenate([c for c in crops if len(c)])
    results: list[Any] = [predictor.predict(im) for im in images]
    n = len(images)
    row = {
        "multipart": _per_call_ms(lambda i: _read(*bodies[i % n]), repeat),
        "decode": _per_call_ms(lambda i: decode_upload("image.jpg", uploads[i % n]), repeat),
        "detect": _per_call_ms(lambda i: predictor.detector.detect(images[i % n]), repeat),
        "crop": _per_call_ms(lambda i: crop_faces(images[i % n], found[i % n], size, margin, False), repeat),
        "model_batch1": faces_per_request
        * _per_call_ms(lambda i: predictor.backend.run(flat[i % len(flat) : i % len(flat) + 1]), repeat),
        "model_batch32": faces_per_request
        * _per_call_ms(lambda i: predictor.backend.run(flat[(i * 32) % (len(flat) - 32) :][:32]), repeat // 8)
        / 32,
        "results": _per_call_ms(lambda i: [{"face": k, **f.to_dict()} for k, f in enumerate(results[i % n])], repeat),
        "json": _per_call_ms(
            lambda i: JSONResponse([{"face": k, **f.to_dict()} for k, f in enumerate(results[i % n])]), repeat
        ),
    }
    row["json"] -= row["results"]
    row["faces_per_request"] = faces_per_request
    return row


def served(model: Path, detector: str, uploads: list[bytes], repeat: int, log: Path) -> dict[str, float]:
    """Server and client CPU ms per request of a real one-at-a-time server answering one client at a time."""
    with server(model, detector, ["--max-batch", "1"], log) as (url, pid), httpx.Client(timeout=60) as http:
        for u in uploads[:20]:  # warm up
            http.post(f"{url}/predict", files={"file": ("image.jpg", u, "image/jpeg")})
        server_start, client_start, wall = cpu_seconds(pid), time.process_time(), time.perf_counter()
        for i in range(repeat):
            files = {"file": ("image.jpg", uploads[i % len(uploads)], "image/jpeg")}
            http.post(f"{url}/predict", files=files).raise_for_status()
        wall = time.perf_counter() - wall
        return {
            "server_cpu": (cpu_seconds(pid) - server_start) * 1000 / repeat,
            "client_cpu": (time.process_time() - client_start) * 1000 / repeat,
            "latency": wall * 1000 / repeat,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--detectors", default="none,haar")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        from affectlab.export.onnx import export_onnx

        model = export_onnx(build_run(tmp), tmp / "model.onnx")
        tests, _, _ = split_paths(args.data)
        crops = [p.read_bytes() for p in tests]
        pictures = [p.read_bytes() for p in make_scenes(tests, tmp / "scenes", 60)]
        table = {}
        for detector in args.detectors.split(","):
            uploads = crops if detector == "none" else pictures
            row = stages(model, detector, uploads, args.repeat)
            whole = served(model, detector, uploads, args.repeat, tmp / f"server-{detector}.log")
            in_process = sum(v for k, v in row.items() if k not in ("model_batch32", "faces_per_request"))
            row["rest"] = whole["server_cpu"] - in_process
            row.update(whole)
            table[detector] = row
            print(json.dumps({"detector": detector, **row}), flush=True)
    print(f"load average after: {os.getloadavg()}\n")
    names = ["multipart", "decode", "detect", "crop", "model_batch1", "model_batch32", "results", "json", "rest"]
    print("| stage (CPU ms per request) | " + " | ".join(table) + " |")
    print("|---|" + "---:|" * len(table))
    for name in [*names, "server_cpu", "client_cpu", "latency"]:
        print(f"| {name} | " + " | ".join(f"{row[name]:.2f}" for row in table.values()) + " |")
    for detector, row in table.items():
        one = row["server_cpu"] + row["client_cpu"]
        saved = row["model_batch1"] - row["model_batch32"]
        print(
            f"{detector}: batching can remove {saved:.2f} of {one:.2f} CPU ms per request ({saved / one:.0%}): "
            f"ceiling {one / (one - saved):.2f}x; even a model that cost nothing: {one / (one - row['model_batch1']):.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
