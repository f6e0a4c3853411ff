"""The model service: every operation of `api.ModelService` over HTTP, one process per GPU.

``python -m model_server serve --storage URL`` opens the object store the backend uses too and runs
an `InProcessModelService` on it behind the routes of `http_schemas` (JSON bodies of the `api` value
types, storage keys, never paths). `HttpModelService` is its client.

* ``POST /v1/embed``: concurrent requests, by image key, are gathered by `MicroBatcher` into one
  encoder forward (up to ``max_batch`` images, waiting at most ``max_wait_ms``), so a GPU sees full
  batches under load; one bad image fails its own request only.
* Long operations (detector training, retraining, evaluation) run in threads as *operations*:
  ``POST /v1/operations/{kind}`` starts one, ``GET`` polls its progress and outcome, ``DELETE``
  cancels it (its ``should_stop()`` turns true at the next check).
* Errors: bad input (a ValueError of the model side, or a malformed body) is a 422 whose detail names
  the problem; other weights than asked for, or than the service is pinned to, a 409.
* Retraining rounds run in ``--train-processes N`` processes (default: one per CUDA device, 1 on a
  CPU): with N > 1 under torchrun, DDP over the machine's GPUs (`InProcessModelService`).
* Pinning: ``--checkpoint PATH`` (with ``--model``) serves that local file for requests naming its
  sha256 and refuses any other weights; ``--model`` alone refuses other architectures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic_core import to_jsonable_python

from model_server import api
from model_server.service import http_schemas as s
from model_server.service.batcher import MicroBatcher
from model_server.service.in_process import InProcessModelService

log = logging.getLogger(__name__)
KEPT_FINISHED = 200  # finished operations remembered for late pollers


@dataclass
class Operation:
    """One long operation: its progress calls so far, and once it ended, its outcome."""

    id: str
    kind: str
    stop: threading.Event = field(default_factory=threading.Event)
    events: list[list[float]] = field(default_factory=list)
    state: str = "running"
    result: Any = None
    error: str | None = None
    error_kind: str | None = None

    def view(self, since: int) -> s.OperationOut:
        events = self.events[since:]
        return s.OperationOut(
            id=self.id,
            kind=self.kind,
            state=self.state,
            events=events,
            next=since + len(events),
            result=self.result,
            error=self.error,
            error_kind=self.error_kind,
        )


def _json(value: Any, status_code: int = 200) -> Response:
    """Plain `json.dumps`: a stability score or a metric can be NaN, which strict JSON refuses."""
    return Response(json.dumps(to_jsonable_python(value)), status_code=status_code, media_type="application/json")


class _Pin:
    """What a pinned service refuses (ModelServiceError, a 409)."""

    def __init__(self, architecture: str | None, info: api.ModelInfo | None) -> None:
        self.architecture = architecture
        self.info = info

    def check(self, model: api.ModelRef) -> None:
        if self.architecture is not None and model.architecture != self.architecture:
            raise api.ModelServiceError(
                f"this model service serves {self.architecture} only, but {model.architecture} was asked for"
            )
        if self.info is not None and model.sha256 != self.info.sha256:
            raise api.ModelServiceError(
                f"wrong weights: this model service is pinned to checkpoint sha256 {self.info.sha256}, "
                f"but {model.sha256} was asked for; start one with that checkpoint"
            )


def create_app(
    service: InProcessModelService,
    *,
    architecture: str | None = None,
    pinned: api.ModelInfo | None = None,
    max_batch: int = 8,
    max_wait_ms: float = 10.0,
    operation_threads: int = 2,
) -> FastAPI:
    """The service's FastAPI app over `service` (see the module docstring).

    Args:
        architecture: refuse other architectures (``--model``).
        pinned: refuse other weights than these (``--checkpoint``, loaded by the caller).
        max_batch: most images in one encoder forward; max_wait_ms: longest wait for a batch to fill.
        operation_threads: long operations running at once (more wait in line).
    """
    pin = _Pin(pinned.architecture if pinned else architecture, pinned)
    batcher = MicroBatcher(_embed_batch(service), max_batch=max_batch, max_wait_ms=max_wait_ms)
    workers = ThreadPoolExecutor(max_workers=operation_threads, thread_name_prefix="operation")
    operations: dict[str, Operation] = {}
    lock = threading.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            for operation in operations.values():
                operation.stop.set()
            await batcher.stop()
            workers.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Data Engine model service", lifespan=lifespan)
    app.state.service = service
    app.state.batcher = batcher
    app.state.operations = operations

    @app.exception_handler(ValueError)
    async def bad_input(_: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(api.ModelServiceError)
    async def refused(_: Request, error: api.ModelServiceError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.get("/v1/health", response_model=api.HealthOut)
    async def health() -> api.HealthOut:
        return api.HealthOut(
            status="ok",
            architecture=pin.architecture,
            device=str(service.device),
            dtype="float16" if service.device.type == "cuda" else "float32",
            checkpoint_sha256=pinned.sha256 if pinned else None,
            queue_depth=batcher.depth,
            max_batch=batcher.max_batch,
            max_wait_ms=batcher.max_wait_ms,
        )

    @app.post("/v1/models/untrained")
    def create_untrained(body: s.WeightsIn) -> Response:
        return _json(service.create_untrained(body.architecture, body.checkpoint_key))

    @app.post("/v1/models/describe")
    def describe(body: s.WeightsIn) -> Response:
        return _json(service.describe(body.architecture, body.checkpoint_key))

    @app.post("/v1/embed")
    async def embed(body: s.EmbedIn) -> Response:
        pin.check(body.model)
        infos = await asyncio.gather(*(batcher.embed((body.model, key)) for key in body.image_keys))
        return _json({"embeddings": infos})

    @app.post("/v1/embedding-wire")
    def embedding_wire(body: s.WireIn) -> Response:
        data = service.embedding_wire(body.embedding, body.encoding)
        return Response(data, media_type="application/octet-stream")

    @app.post("/v1/automatic-masks")
    def automatic_masks(body: s.AutomaticMasksIn) -> Response:
        pin.check(body.model)
        return _json({"records": service.automatic_masks(body.model, body.image_key, body.params)})

    @app.post("/v1/detector/evaluate")
    def evaluate_detector(body: s.EvaluateDetectorIn) -> Response:
        return _json(service.evaluate_detector(body.detector_key, body.samples, body.score_thresh))

    @app.post("/v1/detector/propose")
    def propose(body: s.ProposeIn) -> Response:
        pin.check(body.model)
        return _json(service.propose_masks(body.model, body.detector_key, body.embedding, body.params))

    @app.post("/v1/scores")
    def scores(body: s.ScoresIn) -> Response:
        pin.check(body.model)
        return _json({"scores": service.score_images(body.model, body.embeddings)})

    @app.post("/v1/decoders")
    def decoders(body: s.DecodersIn) -> Response:
        pin.check(body.model)
        return _json(service.export_decoders(body.model, body.prefix))

    @app.post("/v1/operations/{kind}")
    async def start(kind: str, request: Request) -> Response:
        if kind not in s.OPERATION_REQUESTS:
            return _json({"detail": f"unknown operation {kind!r}; expected one of {s.OPERATION_KINDS}"}, 404)
        body = s.OPERATION_REQUESTS[kind].model_validate_json(await request.body())
        pin.check(body.model)  # type: ignore[attr-defined]
        operation = Operation(uuid.uuid4().hex, kind)
        with lock:
            _forget_finished(operations)
            operations[operation.id] = operation
        workers.submit(_run, operation, _operation_call(service, kind, body))
        return _json({"id": operation.id})

    @app.get("/v1/operations/{operation_id}")
    async def poll(operation_id: str, since: int = 0) -> Response:
        operation = operations.get(operation_id)
        if operation is None:
            return _json({"detail": f"no operation {operation_id!r}"}, 404)
        return _json(operation.view(max(since, 0)))

    @app.delete("/v1/operations/{operation_id}")
    async def cancel(operation_id: str) -> Response:
        operation = operations.get(operation_id)
        if operation is None:
            return _json({"detail": f"no operation {operation_id!r}"}, 404)
        operation.stop.set()
        return _json(operation.view(len(operation.events)))

    return app


def _embed_batch(service: InProcessModelService) -> Callable[[Sequence[Any]], list[Any]]:
    """(model, image key) items → their `EmbeddingInfo`s: one `service.embed` per model; if an image
    is bad, each image alone, so it fails only its own request (its result is the error)."""

    def embed_batch(items: Sequence[Any]) -> list[Any]:
        by_model: dict[api.ModelRef, list[int]] = {}
        for i, (model, _) in enumerate(items):
            by_model.setdefault(model, []).append(i)
        results: list[Any] = [None] * len(items)
        for model, indices in by_model.items():
            keys = [items[i][1] for i in indices]
            try:
                infos: list[Any] = service.embed(model, keys)
            except ValueError:  # a bad image: find it, so the others still get theirs
                infos = [_embed_one(service, model, key) for key in keys]
            except Exception as error:  # the model itself failed (e.g. other weights): every request
                infos = [error] * len(keys)
            for i, info in zip(indices, infos):
                results[i] = info
        return results

    return embed_batch


def _embed_one(service: InProcessModelService, model: api.ModelRef, key: str) -> Any:
    try:
        return service.embed(model, [key])[0]
    except Exception as error:
        return error


def _operation_call(service: InProcessModelService, kind: str, body: Any) -> Callable[..., Any]:
    """The service call of an operation, taking ``progress`` and ``should_stop``."""
    if kind == "train_detector":
        return lambda **hooks: service.train_detector(body.model, body.samples, body.config, body.out_key, **hooks)
    if kind == "retrain":
        return lambda **hooks: service.retrain(
            body.model, body.api_samples(), body.config, body.out_key, work_prefix=body.work_prefix, **hooks
        )
    return lambda **hooks: service.evaluate(body.model, body.samples, max_clicks=body.max_clicks, **hooks)


def _run(operation: Operation, call: Callable[..., Any]) -> None:
    def progress(*values: float) -> None:
        operation.events.append([float(v) for v in values])

    try:
        result = call(progress=progress, should_stop=operation.stop.is_set)
    except api.OperationCancelled as error:
        operation.error, operation.state = str(error), "cancelled"
    except ValueError as error:
        operation.error, operation.error_kind, operation.state = str(error), "value", "failed"
    except Exception as error:  # the caller gets it as a ModelServiceError; the log keeps the trace
        if not isinstance(error, api.ModelServiceError):
            log.exception("operation %s (%s) failed", operation.id, operation.kind)
        operation.error, operation.error_kind, operation.state = str(error), "model_service", "failed"
    else:
        operation.result, operation.state = to_jsonable_python(result), "done"


def _forget_finished(operations: dict[str, Operation]) -> None:
    finished = [key for key, op in operations.items() if op.state != "running"]
    for key in finished[: max(0, len(finished) - KEPT_FINISHED)]:
        del operations[key]


def serve(args: argparse.Namespace) -> None:
    """``python -m model_server serve`` (arguments declared in `model_server.__main__`)."""
    import uvicorn

    from model_server.storage import open_storage

    service = InProcessModelService(
        open_storage(args.storage),
        args.cache_dir,
        device=args.device,
        max_batch=args.max_batch,
        train_processes=args.train_processes,
    )
    pinned = None
    if args.checkpoint is not None:
        if args.model is None:
            raise ValueError("--checkpoint needs --model (the checkpoint's architecture)")
        pinned = service.pin_local_checkpoint(args.model, args.checkpoint)
    app = create_app(
        service, architecture=args.model, pinned=pinned, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
