"""Load on ``affectlab serve``: batched against one-at-a-time, for 1, 8 and 32 concurrent clients.

For each detector (``none`` on the 600 affectnet-3999 test crops; any other, e.g. ``haar`` or ``yuface``, on
640x480 scenes with two of them pasted in), the same ONNX model is served twice, each as a user would start it (a
subprocess on a free 127.0.0.1 port): with ``--max-batch 1`` (one image per model call, one call at a time: the
service before batching, which held a lock around each prediction) and with the default batching
(``--max-batch 32``). Each client sends one request, waits for the answer and sends the next (closed loop), so the
traffic is bounded and only ever goes to loopback. The servers are all up at once and take turns: each gets
``--slice`` seconds of load in turn until each has had ``--seconds`` per row, so the other jobs on a shared
machine fall on every server alike and the ratios between them hold even when the absolute numbers do not.
Reported per row: requests/s, faces/s, p50/p95/p99 latency, errors (any answer but 200, or no answer within 60
s), the mean batch size the server saw (``/metrics``), and the CPU milliseconds per request of the server (its
processes, from ``/proc``) and of the clients. The clients run in this process (asyncio, httpx) and share the
CPU with the server, equally for every server. The machine's load average is printed before and after.

``--workers N`` adds a third server: batched, in N processes (``affectlab serve --workers N``), each with its own
model and ``cores / N`` runtime threads; its mean batch is not reported (``/metrics`` answers for one process).

By default the model is MobileNetV2 with ImageNet weights and an untrained multitask head at 128 px (as in
``benchmarks/predict.py``), exported to ONNX; ``--model`` serves a given ``.onnx`` instead.

    python benchmarks/serve_load.py [--seconds 60] [--slice 10] [--clients 1,8,32] [--detectors none,haar]
        [--workers N] [--out load.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import DEFAULT_DATA, build_run, make_scenes, split_paths

MODES = {"one-at-a-time": ["--max-batch", "1"], "batched": ["--max-batch", "32"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(model: Path, detector: str, mode: list[str], log: Path) -> Iterator[tuple[str, int]]:
    """``affectlab serve`` on a free loopback port until the block ends; yields its base URL and process id."""
    port = _free_port()
    command = [sys.executable, "-m", "affectlab.cli", "serve", str(model), "--port", str(port), "--detector",
               detector, "--max-queue", "1024", *mode]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield url, process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) used so far by process ``pid`` and its live child processes (``--workers``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = " ".join(p.read_text() for p in Path(f"/proc/{pid}/task").glob("*/children")).split()
    except OSError:  # the process has ended
        return 0.0
    return (int(fields[11]) + int(fields[12])) / ticks + sum(cpu_seconds(int(c)) for c in children)


def _batches(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics").text
    values = [
        float(re.search(rf"^affectlab_batch_size_{k} (\S+)$", text, re.MULTILINE).group(1)) for k in ("sum", "count")
    ]  # type: ignore[union-attr]
    return values[0], values[1]


@dataclass
class _Tally:
    """What the clients saw of one server over one or more slices of load."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    faces: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    batch_sum: float = 0.0
    batches: float = 0.0

    def row(self) -> dict[str, Any]:
        ms = np.array(self.latencies) * 1000 if self.latencies else np.array([np.nan])
        done = max(1, len(self.latencies) + sum(self.errors.values()))
        return {
            "requests_per_s": len(self.latencies) / self.seconds,
            "faces_per_s": self.faces / self.seconds,
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)),
            "errors": sum(self.errors.values()),
            "error_kinds": self.errors,
            "requests": len(self.latencies),
            "server_cpu_ms": self.server_cpu * 1000 / done,
            "client_cpu_ms": self.client_cpu * 1000 / done,
            "mean_batch": self.batch_sum / self.batches if self.batches else float("nan"),
        }


async def _load(url: str, uploads: list[bytes], clients: int, seconds: float, tally: _Tally) -> None:
    """``clients`` closed-loop clients against ``url`` for ``seconds``, counted into ``tally``."""
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(index: int, http: httpx.AsyncClient) -> None:
        n = index
        while time.perf_counter() < stop:
            start = time.perf_counter()
            try:
                files = {"file": ("image.jpg", uploads[n % len(uploads)], "image/jpeg")}
                response = await http.post(f"{url}/predict", files=files)
                kind = None if response.status_code == 200 else f"HTTP {response.status_code}"
                tally.faces += 0 if kind else len(response.json())
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
            if kind is None:
                tally.latencies.append(time.perf_counter() - start)
            else:
                tally.errors[kind] = tally.errors.get(kind, 0) + 1
            n += clients

    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        begin = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        tally.seconds += time.perf_counter() - begin


def _slice(url: str, pid: int, batched_metrics: bool, uploads: list[bytes], clients: int, seconds: float,
           tally: _Tally) -> None:  # fmt: skip
    """One slice of load on one server, with the server's and the clients' CPU and the batch sizes it saw."""
    before, cpu, client_cpu = _batches(url), cpu_seconds(pid), time.process_time()
    asyncio.run(_load(url, uploads, clients, seconds, tally))
    tally.server_cpu += cpu_seconds(pid) - cpu
    tally.client_cpu += time.process_time() - client_cpu
    if batched_metrics:  # /metrics answers for one process only with --workers
        after = _batches(url)
        tally.batch_sum += after[0] - before[0]
        tally.batches += after[1] - before[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help=".onnx model (default: ImageNet MobileNetV2, 128 px, exported)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=60.0, help="load per row (default 60)")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--detectors", default="none,haar")
    parser.add_argument("--slice", type=float, default=10.0, help="seconds each server is loaded in turn")
    parser.add_argument("--workers", type=int, help="also serve batched in this many processes")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    modes = dict(MODES)
    if args.workers:
        modes[f"batched, {args.workers} workers"] = [*MODES["batched"], "--workers", str(args.workers)]

    from affectlab.evaluation.efficiency import machine_info  # predict.py's cpu_model() moved there
    from affectlab.export.onnx import export_onnx

    print(f"machine: {platform.node()}, {json.dumps(machine_info())}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = args.model or export_onnx(build_run(tmp), tmp / "model.onnx")
        tests, _, _ = split_paths(args.data)
        scenes = make_scenes(tests, tmp / "scenes", 60)
        crops, pictures = [p.read_bytes() for p in tests], [p.read_bytes() for p in scenes]
        for detector in args.detectors.split(","):
            uploads = crops if detector == "none" else pictures
            with contextlib.ExitStack() as stack:
                urls = {
                    mode: stack.enter_context(server(model, detector, flags, tmp / f"server-{detector}-{i}.log"))
                    for i, (mode, flags) in enumerate(modes.items())
                }
                for url, _ in urls.values():
                    asyncio.run(_load(url, uploads, 4, 3, _Tally()))  # warm up
                for clients in (int(c) for c in args.clients.split(",")):
                    tallies = {mode: _Tally() for mode in modes}
                    slices = max(1, round(args.seconds / args.slice))
                    for _ in range(slices):  # servers take turns, so the machine's other load falls on each alike
                        for mode, (url, pid) in urls.items():
                            multi = "workers" in mode
                            _slice(url, pid, not multi, uploads, clients, args.seconds / slices, tallies[mode])
                    for mode, tally in tallies.items():
                        rows.append({**tally.row(), "detector": detector, "server": mode, "clients": clients})
                        print(json.dumps(rows[-1]), flush=True)
    print(f"load after: {os.getloadavg()}")
    print(
        "\n| detector | server | clients | requests/s | faces/s | p50 ms | p95 ms | p99 ms | errors | mean batch "
        "| server CPU ms/req | client CPU ms/req | ×one-at-a-time |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        base = next(r for r in rows if r["detector"] == row["detector"] and r["clients"] == row["clients"]
                    and r["server"] == "one-at-a-time")  # fmt: skip
        print(f"| {row['detector']} | {row['server']} | {row['clients']} | {row['requests_per_s']:.1f} | "
              f"{row['faces_per_s']:.1f} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | {row['p99_ms']:.0f} | "
              f"{row['errors']}{' ' + str(row['error_kinds']) if row['errors'] else ''} | {row['mean_batch']:.1f} | {row['server_cpu_ms']:.1f} | {row['client_cpu_ms']:.1f} | "
              f"{row['requests_per_s'] / base['requests_per_s']:.2f} |")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
