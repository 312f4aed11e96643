"""What the HTTP service reports about itself: Prometheus metrics at ``/metrics`` and one JSON log line a request.

Each app has its own registry, so several apps in one process (tests, workers) never mix their counts. The
queue depth is read when ``/metrics`` is scraped; batch sizes and faces are recorded by the batching worker and
the predict endpoint.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["REQUEST_LOG", "ServiceMetrics"]

REQUEST_LOG = logging.getLogger("affectlab.http")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    """Requests, latency, queue depth, batch sizes and faces, in a registry of their own."""

    def __init__(self, queue_depth: Callable[[], int]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "affectlab_http_requests", "HTTP requests answered", ["method", "path", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "affectlab_http_request_seconds",
            "time from request to response",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge("affectlab_queue_depth", "requests waiting for the model", registry=self.registry)
        self.queue_depth.set_function(queue_depth)
        self.batch_size = Histogram(
            "affectlab_batch_size", "images per model batch", buckets=_BATCH_BUCKETS, registry=self.registry
        )
        self.faces = Counter("affectlab_faces", "faces found and classified", registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def middleware(self, known_paths: frozenset[str]) -> Callable[..., Any]:
        """An HTTP middleware that counts, times and logs every request (one JSON line each).

        Paths outside ``known_paths`` are counted as ``other`` so that scanners cannot grow the label set.
        """

        async def observe(request: Any, call_next: Any) -> Any:
            start = time.perf_counter()
            status = 500
            try:
                response = await call_next(request)
                status = response.status_code
                return response
            finally:
                seconds = time.perf_counter() - start
                path = request.url.path if request.url.path in known_paths else "other"
                self.requests.labels(request.method, path, str(status)).inc()
                self.latency.labels(path).observe(seconds)
                record = {
                    "ts": round(time.time(), 3),
                    "method": request.method,
                    "path": request.url.path,
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                    "client": request.client.host if request.client else None,
                }
                faces = getattr(request.state, "faces", None)
                if faces is not None:
                    record["faces"] = faces
                REQUEST_LOG.info(json.dumps(record))

        return observe
