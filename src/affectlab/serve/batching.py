"""Dynamic batching for the HTTP service: concurrent requests share one predictor, a batch at a time.

A batch of 32 face crops costs far less than 32 single model calls, so requests that arrive while the model is
busy wait in a bounded queue and are then served together: the worker takes what is waiting, up to
``max_batch`` items, waiting at most ``max_wait_s`` for more once the first has arrived, and only while more
are on their way (``expecting``), so a lone client never waits for company. One worker thread runs
the predictor, so OpenCV's cascade objects are never shared between threads and the runtime's own threads have
the cores to themselves. A full queue is refused at once (``QueueFull``, a 503 with ``Retry-After``) rather than
letting clients wait without end, and each request waits at most ``timeout_s`` for its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

__all__ = ["BatchQueue", "QueueFull", "RequestTimeout"]


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already; the client should retry later."""


class RequestTimeout(Exception):
    """A request was not answered within the queue's ``timeout_s``."""


@dataclass
class _Job:
    item: Any
    future: asyncio.Future[Any]


class BatchQueue:
    """Collects items from concurrent callers into batches for ``run_batch`` (list in, list of results out).

    Args:
        run_batch: called in one worker thread with up to ``max_batch`` items; returns one result per item, in
            order. An exception fails every request of that batch with it.
        max_batch: most items per call (1 serves requests one at a time, as a lock would).
        max_wait_s: how long a batch waits for more items after its first one.
        max_queue: most items waiting; one more raises ``QueueFull``.
        timeout_s: most seconds a caller waits for its result (queue and run); then ``RequestTimeout``.
        on_batch: called with each batch's size (for metrics).
    """

    def __init__(
        self,
        run_batch: Callable[[list[Any]], Sequence[Any]],
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        timeout_s: float = 30.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._incoming = 0

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Mark a request that is still being read or decoded: batches wait for it (up to ``max_wait_s``)."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1

    @property
    def depth(self) -> int:
        """Requests waiting (not counting the batch being run)."""
        return 0 if self._queue is None else self._queue.qsize()

    def check_room(self) -> None:
        """Raise ``QueueFull`` if a request submitted now would be refused."""
        if self.depth >= self.max_queue:
            raise QueueFull(f"{self.max_queue} requests are waiting already")

    async def start(self) -> None:
        """Start the worker on the running event loop (the app's startup)."""
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="affectlab-predict")
        self._worker = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        """Stop the worker; waiting requests are cancelled (the app's shutdown)."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait().future.cancel()

    async def submit(self, item: Any) -> Any:
        """The result of ``item``, computed in a batch with whatever else is waiting."""
        if self._queue is None:
            raise RuntimeError("BatchQueue.start() was not called")
        job = _Job(item, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull(f"{self.max_queue} requests are waiting already") from None
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.timeout_s)
        except TimeoutError:
            job.future.cancel()  # the worker skips it if it has not started it yet
            raise RequestTimeout(f"no answer within {self.timeout_s:g} s") from None

    async def _serve(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0 or not self._incoming:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            jobs = [job for job in jobs if not job.future.done()]  # timed out while waiting
            if not jobs:
                continue
            if self.on_batch is not None:
                self.on_batch(len(jobs))
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [job.item for job in jobs])
            except Exception as exc:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, result in zip(jobs, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)
