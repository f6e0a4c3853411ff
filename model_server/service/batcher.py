"""`MicroBatcher`: concurrent requests gathered into batches, one batch at a time in one thread.

Requests that arrive together are gathered (up to ``max_batch`` items, waiting at most
``max_wait_ms`` after the first one) and run as ONE call of the batch function in a worker thread,
so a GPU sees full batches under load while a lone request waits only ``max_wait_ms``. The event
loop never runs the model itself: it keeps accepting requests (and answering health checks) while
a batch runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

BatchFn = Callable[[Sequence[Any]], list[Any]]


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Collects concurrent embed calls into batches for one encoder forward each.

    ``embed_batch`` (a list of items, e.g. (model, image key) pairs → one result each, in order; a
    result that is an exception fails that item alone) runs in a single dedicated thread: one batch
    at a time, because one model instance on one device gains nothing from overlapping forwards and
    would only compete for memory.
    """

    def __init__(self, embed_batch: BatchFn, max_batch: int = 8, max_wait_ms: float = 10.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.embed_batch = embed_batch
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.batch_sizes: list[int] = []  # sizes of the batches run so far (for tests and logs)
        self._queue: asyncio.Queue[_Pending] | None = None
        self._in_flight = 0
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def depth(self) -> int:
        """Images waiting or being embedded right now."""
        waiting = self._queue.qsize() if self._queue is not None else 0
        return waiting + self._in_flight

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        while self._queue is not None and not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the embedding service is shutting down"))

    async def embed(self, item: Any) -> Any:
        """Queue one item and wait for its result."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(item, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        """Wait for one request, then gather more until the batch is full or the wait is over.

        Polls the queue every millisecond instead of ``wait_for(queue.get())``: on Python 3.11
        a timeout racing a completed ``get`` can drop the item, which here would lose a request.
        """
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait_ms / 1000.0
        while len(batch) < self.max_batch:
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            remaining = deadline - time.monotonic()
            if len(batch) == self.max_batch or remaining <= 0:
                break
            await asyncio.sleep(min(remaining, 0.001))
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self._in_flight = len(batch)
            self.batch_sizes.append(len(batch))
            try:
                results = await loop.run_in_executor(self._executor, self.embed_batch, [p.item for p in batch])
            except Exception as error:  # one bad batch must not stop the service
                log.exception("embedding batch of %d failed", len(batch))
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
            else:
                for pending, result in zip(batch, results):
                    if pending.future.done():
                        continue
                    if isinstance(result, BaseException):
                        pending.future.set_exception(result)
                    else:
                        pending.future.set_result(result)
            finally:
                self._in_flight = 0
