"""`HttpModelService`: the model-service protocol over HTTP, the client of `server.py`.

Torch-free (httpx, pydantic, `api` only): the backend's API and CPU workers use it. Requests carry
storage keys (`http_schemas`); both sides open the same object store from their own settings.

* A connection that cannot be made (service down, restarting, not yet up) is retried `retries`
  times with exponential backoff, then raised as `api.ModelServiceError` naming the URL. Only
  connection errors are retried: the request never reached the service, so repeating it is safe.
* 422 (bad input) is raised as ValueError with the service's detail, 409 (other weights) and every
  other failure as `api.ModelServiceError`.
* Long operations are started, then polled every `poll_s`: each progress call of the model side is
  forwarded to `progress` here, in the caller's thread; once `should_stop()` turns true the operation
  is cancelled (DELETE) and the poll continues until it has ended: `api.OperationCancelled` (or, for
  retraining, the outcome with ``stopped_early``), exactly as in process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from model_server import api
from model_server.service import http_schemas as s

EMBED_KEYS_PER_REQUEST = 32  # a request's images are batched on the service; this bounds its duration
_EMBEDDINGS = TypeAdapter(list[api.EmbeddingInfo])
_SCORES = TypeAdapter(list[api.ImageScores])


class HttpModelService:
    """The model service at `url`.

    Args:
        url: base URL, e.g. ``http://model-server:8001``.
        timeout: seconds per HTTP request (a batch on a busy GPU, a decoder export, can take a while).
        retries: further attempts after a connection error (with backoff from `backoff_s`, doubling).
        poll_s: seconds between polls of a long operation.
    """

    def __init__(
        self, url: str, *, timeout: float = 300.0, retries: int = 3, backoff_s: float = 0.2, poll_s: float = 0.2
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self.poll_s = poll_s
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def health(self) -> api.HealthOut:
        return api.HealthOut.model_validate(self._call("GET", "/v1/health").json())

    # -- the protocol ----------------------------------------------------------------------------

    def create_untrained(self, architecture: str, checkpoint_key: str) -> api.ModelInfo:
        body = {"architecture": architecture, "checkpoint_key": checkpoint_key}
        return s.MODEL_INFO.validate_python(self._post("/v1/models/untrained", body))

    def describe(self, architecture: str, checkpoint_key: str) -> api.ModelInfo:
        body = {"architecture": architecture, "checkpoint_key": checkpoint_key}
        return s.MODEL_INFO.validate_python(self._post("/v1/models/describe", body))

    def embed(self, model: api.ModelRef, image_keys: Sequence[str]) -> list[api.EmbeddingInfo]:
        keys = list(image_keys)
        infos: list[api.EmbeddingInfo] = []
        for start in range(0, len(keys), EMBED_KEYS_PER_REQUEST):
            chunk = keys[start : start + EMBED_KEYS_PER_REQUEST]
            answer = self._post("/v1/embed", {"model": model, "image_keys": chunk})
            infos.extend(_EMBEDDINGS.validate_python(answer["embeddings"]))
        return infos

    def embedding_wire(self, embedding: api.EmbeddingInfo, encoding: str) -> bytes:
        body = to_jsonable_python({"embedding": embedding, "encoding": encoding})
        return self._call("POST", "/v1/embedding-wire", json=body).content

    def automatic_masks(self, model: api.ModelRef, image_key: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        body = {"model": model, "image_key": image_key, "params": dict(params)}
        return self._post("/v1/automatic-masks", body)["records"]

    def train_detector(
        self,
        model: api.ModelRef,
        samples: Sequence[api.DetectorSample],
        config: Mapping[str, Any],
        out_key: str,
        *,
        progress: api.TrainProgress | None = None,
        should_stop: api.ShouldStop | None = None,
    ) -> dict[str, Any]:
        body = {"model": model, "samples": list(samples), "config": dict(config), "out_key": out_key}
        return self._operation("train_detector", body, progress, should_stop)

    def evaluate_detector(
        self, detector_key: str, samples: Sequence[api.DetectorSample], score_thresh: float
    ) -> dict[str, float]:
        body = {"detector_key": detector_key, "samples": list(samples), "score_thresh": score_thresh}
        return self._post("/v1/detector/evaluate", body)

    def propose_masks(
        self, model: api.ModelRef, detector_key: str, embedding: api.EmbeddingInfo, params: api.ProposeParams
    ) -> api.Proposals:
        body = {"model": model, "detector_key": detector_key, "embedding": embedding, "params": params}
        return s.PROPOSALS.validate_python(self._post("/v1/detector/propose", body))

    def retrain(
        self,
        model: api.ModelRef,
        samples: Sequence[api.MaskSample] | Sequence[api.ImageMaskSample],
        config: Mapping[str, Any],
        out_key: str,
        *,
        work_prefix: str | None = None,
        progress: api.TrainProgress | None = None,
        should_stop: api.ShouldStop | None = None,
    ) -> api.TrainOutcome:
        body = {
            "model": model,
            "samples": list(samples),
            "config": dict(config),
            "out_key": out_key,
            "work_prefix": work_prefix,
        }
        return s.TRAIN_OUTCOME.validate_python(self._operation("retrain", body, progress, should_stop))

    def evaluate(
        self,
        model: api.ModelRef,
        samples: Sequence[api.MaskSample],
        *,
        max_clicks: int = 20,
        progress: api.CountProgress | None = None,
        should_stop: api.ShouldStop | None = None,
    ) -> dict[str, float]:
        body = {"model": model, "samples": list(samples), "max_clicks": max_clicks}
        return self._operation("evaluate", body, progress, should_stop)

    def score_images(self, model: api.ModelRef, embeddings: Sequence[api.EmbeddingInfo]) -> list[api.ImageScores]:
        answer = self._post("/v1/scores", {"model": model, "embeddings": list(embeddings)})
        return _SCORES.validate_python(answer["scores"])

    def export_decoders(self, model: api.ModelRef, prefix: str) -> dict[str, str]:
        return self._post("/v1/decoders", {"model": model, "prefix": prefix})

    # -- transport -------------------------------------------------------------------------------

    def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self._call("POST", path, json=to_jsonable_python(dict(body))).json()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The 200 answer; see the module docstring for retries and errors."""
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                if attempt == self.retries:
                    raise api.ModelServiceError(
                        f"model service at {self.url} is unreachable ({self.retries + 1} attempts): {error}"
                    ) from error
                time.sleep(self.backoff_s * 2**attempt)
            except httpx.HTTPError as error:
                raise api.ModelServiceError(f"model service at {self.url} failed on {path}: {error!r}") from error
        if response.status_code == 200:
            return response
        detail = _detail(response)
        if response.status_code == 422:
            raise ValueError(detail)
        if response.status_code == 409:
            raise api.ModelServiceError(f"model service at {self.url} refused: {detail}")
        raise api.ModelServiceError(f"model service at {self.url} answered {response.status_code} on {path}: {detail}")

    def _operation(
        self,
        kind: str,
        body: Mapping[str, Any],
        progress: Callable[..., None] | None,
        should_stop: api.ShouldStop | None,
    ) -> Any:
        operation = self._post(f"/v1/operations/{kind}", body)["id"]
        try:
            return self._follow(kind, operation, progress, should_stop)
        except BaseException:
            # The caller gave up (its progress callback raised, e.g. its job was cancelled, or it was
            # interrupted): the operation must not go on holding the model side. A DELETE of an operation
            # that has ended is a no-op there.
            with contextlib.suppress(api.ModelServiceError, httpx.HTTPError):
                self._call("DELETE", f"/v1/operations/{operation}")
            raise

    def _follow(
        self,
        kind: str,
        operation: str,
        progress: Callable[..., None] | None,
        should_stop: api.ShouldStop | None,
    ) -> Any:
        """Poll the operation until it ends: its result, or the exception its end stands for."""
        since, cancelled = 0, False
        while True:
            view = s.OperationOut.model_validate(
                self._call("GET", f"/v1/operations/{operation}", params={"since": since}).json()
            )
            if progress is not None:
                for event in view.events:
                    progress(*(int(v) for v in event[:2]), *event[2:])
            since = view.next
            if view.state == "done":
                return view.result
            if view.state == "cancelled":
                raise api.OperationCancelled(view.error or f"{kind} was cancelled")
            if view.state == "failed":
                if view.error_kind == "value":
                    raise ValueError(view.error)
                raise api.ModelServiceError(f"model service at {self.url}: {kind} failed: {view.error}")
            if not cancelled and should_stop is not None and should_stop():
                self._call("DELETE", f"/v1/operations/{operation}")
                cancelled = True
                continue
            time.sleep(self.poll_s)


def _detail(response: httpx.Response) -> str:
    """The service's error detail: its text, or FastAPI's validation errors as ``field: message``."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text[:500]
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in detail)
    return str(detail)
