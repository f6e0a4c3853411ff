"""The JSON bodies of the model service's routes: `api` value types inside pydantic requests.

Shared by `server.py` (which validates them: a malformed body is a 422 naming the field) and
`http_client.py` (which builds them), and torch-free like `api`, because the backend imports the client.

Routes (all under ``/v1``): ``GET health``; ``POST models/untrained``, ``models/describe``,
``embed`` (micro-batched), ``embedding-wire`` (raw bytes back), ``automatic-masks``,
``detector/evaluate``, ``detector/propose``, ``scores``, ``decoders``; and the long operations
``POST operations/{kind}`` (kind in `OPERATION_KINDS`; body: that kind's request) → ``{"id"}``,
``GET operations/{id}?since=N`` → `OperationOut` (progress events from the N-th on), ``DELETE
operations/{id}`` (cancel: the operation's ``should_stop()`` turns true).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from model_server import api

OPERATION_KINDS = ("train_detector", "retrain", "evaluate")
OperationState = Literal["running", "done", "failed", "cancelled"]
# How a failed operation's error is raised again on the client's side.
ErrorKind = Literal["value", "model_service"]


class WeightsIn(BaseModel):
    architecture: str
    checkpoint_key: str


class EmbedIn(BaseModel):
    model: api.ModelRef
    image_keys: list[str]


class EmbedOut(BaseModel):
    embeddings: list[api.EmbeddingInfo]


class WireIn(BaseModel):
    embedding: api.EmbeddingInfo
    encoding: str


class AutomaticMasksIn(BaseModel):
    model: api.ModelRef
    image_key: str
    params: dict[str, Any] = Field(default_factory=dict)


class TrainDetectorIn(BaseModel):
    model: api.ModelRef
    samples: list[api.DetectorSample]
    config: dict[str, Any] = Field(default_factory=dict)
    out_key: str


class EvaluateDetectorIn(BaseModel):
    detector_key: str
    samples: list[api.DetectorSample]
    score_thresh: float


class ProposeIn(BaseModel):
    model: api.ModelRef
    detector_key: str
    embedding: api.EmbeddingInfo
    params: api.ProposeParams


class RetrainIn(BaseModel):
    model: api.ModelRef
    samples: list[api.MaskSample]
    config: dict[str, Any] = Field(default_factory=dict)
    out_key: str
    work_prefix: str | None = None


class EvaluateIn(BaseModel):
    model: api.ModelRef
    samples: list[api.MaskSample]
    max_clicks: int = 20


class ScoresIn(BaseModel):
    model: api.ModelRef
    embeddings: list[api.EmbeddingInfo]


class ScoresOut(BaseModel):
    scores: list[api.ImageScores]


class DecodersIn(BaseModel):
    model: api.ModelRef
    prefix: str


OPERATION_REQUESTS: dict[str, type[BaseModel]] = {
    "train_detector": TrainDetectorIn,
    "retrain": RetrainIn,
    "evaluate": EvaluateIn,
}


class OperationOut(BaseModel):
    """A long operation as the poller sees it: the progress calls from the ``since``-th on (each
    the arguments of one ``progress(...)`` call), then, once it ended, its result or error."""

    id: str
    kind: str
    state: OperationState
    events: list[list[float]]
    next: int  # the ``since`` of the next poll
    result: Any = None
    error: str | None = None
    error_kind: ErrorKind | None = None


MODEL_INFO = TypeAdapter(api.ModelInfo)
TRAIN_OUTCOME = TypeAdapter(api.TrainOutcome)
PROPOSALS = TypeAdapter(api.Proposals)
