"""The model service: one process per GPU, the model loaded once, concurrent requests batched.

``POST /v1/embed`` takes one image (see `model_server.api` for the wire format) and answers its
float16 embedding. Requests that arrive together are gathered by `MicroBatcher` (up to
``max_batch`` images, waiting at most ``max_wait_ms`` after the first one) and run as ONE encoder
forward in a worker thread, so a GPU sees full batches under load while a lone request waits only
``max_wait_ms``. The event loop never runs the model itself: it keeps accepting requests (and
answering ``/v1/health``) while a batch runs.

``POST /v1/automatic-masks`` runs the automatic generator (`model_server.amg`) over one image, in its
own thread, one image at a time: the backend's stage-3 worker sends its images here in HTTP mode.

Run it with ``python -m model_server serve --model vit_h --checkpoint PATH --port 8001``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from fastapi import FastAPI, HTTPException, Request, Response

from model_server import api
from model_server.amg import AutomaticMaskGenerator
from model_server.service.embedding_model import EmbeddingModel

log = logging.getLogger(__name__)

EmbedFn = Callable[[Sequence[np.ndarray]], list[api.EmbeddingResult]]


@dataclass
class _Pending:
    image: np.ndarray
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Collects concurrent embed calls into batches for one encoder forward each.

    ``embed_batch`` (a list of HxWx3 uint8 images → one `EmbeddingResult` each) runs in a single
    dedicated thread: one batch at a time, because one model instance on one device gains
    nothing from overlapping forwards and would only compete for memory.
    """

    def __init__(self, embed_batch: EmbedFn, max_batch: int = 8, max_wait_ms: float = 10.0) -> None:
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

    async def embed(self, image: np.ndarray) -> api.EmbeddingResult:
        """Queue one HxWx3 uint8 RGB image and wait for its embedding."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(image, future))
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
                results = await loop.run_in_executor(self._executor, self.embed_batch, [p.image for p in batch])
            except Exception as error:  # one bad batch must not stop the service
                log.exception("embedding batch of %d failed", len(batch))
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
            else:
                for pending, result in zip(batch, results):
                    if not pending.future.done():
                        pending.future.set_result(result)
            finally:
                self._in_flight = 0


def create_service(
    architecture: str,
    checkpoint: str | None = None,
    device: str | None = None,
    *,
    max_batch: int = 8,
    max_wait_ms: float = 10.0,
    model: EmbeddingModel | None = None,
) -> FastAPI:
    """The service's FastAPI app. The model is loaded here, once (GPU and float16 when available).

    Args:
        architecture: ``vit_t``, ``vit_b``, ``vit_l`` or ``vit_h``.
        checkpoint: path of the weights; None builds seeded random (untrained) weights.
        device: ``cuda``, ``cpu``...; None picks CUDA when available.
        max_batch: most images in one encoder forward.
        max_wait_ms: longest a request waits for others to join its batch.
        model: an already loaded model (tests share one); overrides the three arguments above.
    """
    model = model or EmbeddingModel(architecture, checkpoint, device=device)
    batcher = MicroBatcher(model.embed, max_batch=max_batch, max_wait_ms=max_wait_ms)
    amg_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amg")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            amg_thread.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Data Engine model server", lifespan=lifespan)
    app.state.model = model
    app.state.batcher = batcher

    @app.get("/v1/health", response_model=api.HealthOut)
    async def health() -> api.HealthOut:
        return api.HealthOut(
            status="ok",
            architecture=model.architecture,
            device=str(model.device),
            dtype=model.dtype_name,
            checkpoint_sha256=model.checkpoint_sha256,
            queue_depth=batcher.depth,
            max_batch=batcher.max_batch,
            max_wait_ms=batcher.max_wait_ms,
        )

    @app.post("/v1/embed")
    async def embed(request: Request) -> Response:
        body = await request.body()
        try:
            image = api.decode_image_request(body, request.headers)
        except ValueError as error:
            raise HTTPException(status_code=400, detail=str(error)) from None
        result = await batcher.embed(image)
        return Response(
            content=api.embedding_to_bytes(result.embedding),
            media_type="application/octet-stream",
            headers=api.embedding_headers(result.original_size, result.input_size),
        )

    @app.post("/v1/automatic-masks")
    async def automatic_masks(request: Request) -> Response:
        """The automatic generator over one image, one image at a time (each fills the device).
        Plain `json.dumps`: a stability score can be NaN (the official generator's 0/0 at
        stability_score_thresh 0), which the strict JSON of FastAPI's default response refuses."""
        body = await request.body()
        try:
            image = api.decode_image_request(body, request.headers)
            params = api.decode_generator_params(request.headers)
        except ValueError as error:
            raise HTTPException(status_code=400, detail=str(error)) from None
        try:
            generator = AutomaticMaskGenerator(model.sam, **{**params, "output_mode": "coco_rle"})
        except (TypeError, ValueError) as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        records = await asyncio.get_running_loop().run_in_executor(amg_thread, generator.generate, image)
        return Response(content=json.dumps({"records": records}), media_type="application/json")

    return app


def serve(args: argparse.Namespace) -> None:
    """``python -m model_server serve`` (arguments declared in `model_server.__main__`):
    one process, one model, one device."""
    import uvicorn

    app = create_service(
        args.model, args.checkpoint, args.device, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
