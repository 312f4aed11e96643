"""The service under concurrent clients: batching, a full queue, timeouts, the API key, CORS and /metrics.

Each app runs in a real uvicorn server on 127.0.0.1 (in a thread of the test process, so that the test can hold
the model busy): its face detector is a real ``FaceDetector`` that waits at a gate until the test opens it. While
the first request waits there, the next ones queue up, so what is batched and what is refused is decided by the
test, not by timing.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from support.models import demo_faces, one_torch_thread, running, serving_app

from affectlab.runtime.faces import WholeImageDetector
from affectlab.runtime.predictor import load
from affectlab.runtime.results import Detection
from affectlab.serve.app import ServeOptions, create_app
from affectlab.serve.batching import BatchQueue, QueueFull, RequestTimeout

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


class GateDetector:
    """The whole image is the face, but the first call waits until ``gate`` is set (the model is 'busy')."""

    name = "none"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.entered.set()
        assert self.gate.wait(600), "the test never opened the gate"
        return WholeImageDetector().detect(image)


@pytest.fixture(scope="module")
def faces(work: Path) -> list[bytes]:
    """Distinct synthetic face crops as PNG uploads."""
    return [cv2.imencode(".png", face)[1].tobytes() for face in demo_faces(work)[:6]]


def _post(url: str, data: bytes, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/predict", files={"file": ("face.png", data, "image/png")}, headers=headers, timeout=600)


def _metric(url: str, name: str, **headers: str) -> float:
    text = httpx.get(f"{url}/metrics", headers=headers).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics:\n{text}"
    return float(match.group(1))


def _wait_for_queue(url: str, depth: int) -> None:
    deadline = time.monotonic() + 600  # a safety net: the loop ends when the queue gets there
    while _metric(url, "affectlab_queue_depth") != depth:
        assert time.monotonic() < deadline, f"queue never reached {depth}"
        time.sleep(0.02)


def test_waiting_requests_are_batched_and_each_gets_its_own_result(run: Path, faces: list[bytes]) -> None:
    reference = load(run, detector="none")  # the same model, one image at a time, no server
    expected = [
        reference.predict(cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].copy()) for f in faces
    ]
    detector = GateDetector()
    with running(load(run, detector=detector), max_batch=32) as url, ThreadPoolExecutor(8) as pool:
        first = pool.submit(_post, url, faces[0])
        assert detector.entered.wait(600)  # the model is busy with the first request
        rest: list[Future[httpx.Response]] = []
        for n, face in enumerate(faces[1:], start=1):
            rest.append(pool.submit(_post, url, face))
            _wait_for_queue(url, n)  # each waits in the queue, in order
        detector.gate.set()
        answers = [first.result(), *(f.result() for f in rest)]
        assert _metric(url, "affectlab_batch_size_count") == 2  # the first alone, then the five waiting ones
        assert _metric(url, "affectlab_batch_size_sum") == len(faces)
        assert _metric(url, "affectlab_faces_total") == len(faces)
    for answer, want in zip(answers, expected):
        assert answer.status_code == 200
        (got,) = answer.json()
        (face,) = want
        assert got["label"] == face.label and got["box"] == list(face.box)
        assert got["probs"] == pytest.approx(face.to_dict()["probs"], abs=1e-5)
        assert got["valence"] == pytest.approx(face.valence, abs=1e-5)
    assert len({a.json()[0]["label"] + str(a.json()[0]["valence"]) for a in answers}) == len(faces)  # all differ


def test_a_full_queue_answers_503_with_retry_after(run: Path, faces: list[bytes]) -> None:
    detector = GateDetector()
    with running(load(run, detector=detector), max_batch=1, max_queue=2) as url, ThreadPoolExecutor(4) as pool:
        busy = pool.submit(_post, url, faces[0])
        assert detector.entered.wait(600)
        queued = [pool.submit(_post, url, faces[1]), pool.submit(_post, url, faces[2])]
        _wait_for_queue(url, 2)
        refused = _post(url, faces[3])
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "server busy" in refused.json()["detail"]
        detector.gate.set()
        assert [r.result().status_code for r in [busy, *queued]] == [200, 200, 200]
        assert _post(url, faces[3]).status_code == 200  # room again
        text = httpx.get(f"{url}/metrics").text
    assert 'affectlab_http_requests_total{method="POST",path="/predict",status="503"} 1.0' in text
    assert 'affectlab_http_requests_total{method="POST",path="/predict",status="200"} 4.0' in text
    assert 'affectlab_batch_size_bucket{le="1.0"} 4.0' in text  # --max-batch 1: one image per model call


def test_a_request_not_answered_in_time_gets_504(run: Path, faces: list[bytes]) -> None:
    detector = GateDetector()
    app = create_app(load(run, detector=detector), ServeOptions(timeout_s=0.3))
    with serving_app(app) as url:
        late = _post(url, faces[0])  # the gate stays shut: no answer within 0.3 s
        assert late.status_code == 504 and "timed out" in late.json()["detail"]
        detector.gate.set()
        app.state.queue.timeout_s = 600  # the next answer may take its time on a busy machine: no race with 0.3 s
        assert _post(url, faces[1]).status_code == 200  # the worker went on


def test_batch_queue_routes_results_and_refuses_when_full() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def times_ten(items: list[int]) -> list[int]:
        gate.wait(10)
        return [10 * x for x in items]

    async def scenario() -> None:
        queue = BatchQueue(times_ten, max_batch=4, max_wait_s=0.01, max_queue=8, on_batch=sizes.append)
        await queue.start()
        first = asyncio.ensure_future(queue.submit(-1))
        while not sizes:  # the worker has taken the first item and waits at the gate
            await asyncio.sleep(0.005)
        waiting = [asyncio.ensure_future(queue.submit(i)) for i in range(8)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await queue.submit(99)
        gate.set()
        assert await first == -10 and await asyncio.gather(*waiting) == [10 * i for i in range(8)]
        await queue.stop()

    asyncio.run(scenario())
    assert sizes == [1, 4, 4]


def test_batch_queue_times_out_and_skips_abandoned_items() -> None:
    seen: list[list[int]] = []
    gate = threading.Event()

    def record(items: list[int]) -> list[int]:
        gate.wait(10)
        seen.append(items)
        return items

    async def scenario() -> None:
        queue = BatchQueue(record, max_batch=4, timeout_s=0.1)
        await queue.start()
        with pytest.raises(RequestTimeout):
            await queue.submit(1)  # taken by the worker, stuck at the gate
        with pytest.raises(RequestTimeout):
            await queue.submit(2)  # stuck in the queue behind it
        gate.set()
        queue.timeout_s = 600
        assert await queue.submit(3) == 3
        await queue.stop()

    asyncio.run(scenario())
    assert seen == [[1], [3]]  # 2 was abandoned before the worker reached it


def test_api_key_is_required_except_for_health(run: Path, faces: list[bytes]) -> None:
    with running(load(run, detector="none"), api_key="s3cret") as url:
        assert _post(url, faces[0]).status_code == 401
        wrong = _post(url, faces[0], key="guess")
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert _post(url, faces[0], key="s3cret").status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200  # load balancers probe it without a key
        auth = {"Authorization": "Bearer s3cret"}
        assert _metric(url, 'affectlab_http_requests_total{method="POST",path="/predict",status="401"}', **auth) == 2


def test_cors_is_off_unless_origins_are_given(run: Path) -> None:
    preflight = {"Origin": "https://lab.example", "Access-Control-Request-Method": "POST"}
    predictor = load(run, detector="none")
    with running(predictor) as url:
        reply = httpx.options(f"{url}/predict", headers=preflight)
        assert "access-control-allow-origin" not in reply.headers
        assert "access-control-allow-origin" not in httpx.get(f"{url}/health", headers=preflight).headers
    with running(predictor, cors_origins=["https://lab.example"], api_key="k") as url:
        reply = httpx.options(f"{url}/predict", headers=preflight)  # a preflight carries no key
        assert reply.status_code == 200 and reply.headers["access-control-allow-origin"] == "https://lab.example"
        other = httpx.options(f"{url}/predict", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--host", "0.0.0.0"],
            {},
            (
                "--host 0.0.0.0 is reachable from other machines: set --api-key (or "
                "AFFECTLAB_API_KEY), or pass --insecure to serve without one"
            ),
        ),
        (["--host", "192.168.1.5", "--api-key", " "], {}, "the API key is empty (--api-key or AFFECTLAB_API_KEY)"),
        (["--max-queue", "0"], {}, "--max-queue must be at least 1, got 0"),
        (["--host", "0.0.0.0", "--insecure"], {}, "MISSING: model not found"),
        (["--host", "::"], {"AFFECTLAB_API_KEY": "k"}, "MISSING: model not found"),  # the key passes the bind check
    ],
)
def test_serve_refuses_a_public_bind_without_a_key(tmp_path: Path, args: list[str], env: dict, message: str) -> None:  # type: ignore[type-arg]
    missing = tmp_path / "none.onnx"
    environment = {k: v for k, v in os.environ.items() if k != "AFFECTLAB_API_KEY"} | env
    result = subprocess.run(
        [sys.executable, "-m", "affectlab.cli", "serve", str(missing), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"affectlab: error: {message.replace('MISSING', str(missing))}"]


def test_a_batch_waits_only_for_requests_on_their_way() -> None:
    sizes: list[int] = []

    async def scenario() -> None:
        queue = BatchQueue(list, max_batch=8, max_wait_s=30, timeout_s=20, on_batch=sizes.append)
        await queue.start()
        assert await queue.submit(1) == 1  # nothing else on its way: served without waiting 30 s

        async def late_request() -> int:
            with queue.expecting():
                await asyncio.sleep(0.05)  # still uploading while the other waits in the queue
            return await queue.submit(3)

        late = asyncio.ensure_future(late_request())
        await asyncio.sleep(0)
        assert await asyncio.gather(queue.submit(2), late) == [2, 3]
        await queue.stop()

    asyncio.run(scenario())
    assert sizes == [1, 2]
