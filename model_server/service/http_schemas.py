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

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from model_server import api

OPERATION_KINDS = ("train_detector", "retrain", "evaluate")
OperationState = Literal["running", "done", "failed", "cancelled"]
# How a failed operation's error is raised again on the client's side.
ErrorKind = Literal["value", "model_service"]

MAX_KEY_LENGTH = 1024  # characters of a storage key
MAX_RLE_COUNTS = 10_000_000  # characters of a compressed COCO RLE (a detailed mask of a 100 MP image fits)
MAX_TRAIN_SAMPLES = 1_000_000  # masks of one round


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


class RleIn(BaseModel):
    """A compressed COCO RLE on the wire: ``{"size": [h, w], "counts": str}``, nothing else."""

    model_config = ConfigDict(extra="forbid")
    size: tuple[int, int]
    counts: str = Field(max_length=MAX_RLE_COUNTS)


class ImageMaskSampleIn(BaseModel):
    """An `api.ImageMaskSample` on the wire: a stored image's key and its object's RLE."""

    model_config = ConfigDict(extra="forbid")
    image_key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    rle: RleIn


class RetrainIn(BaseModel):
    """A round's request: `MaskSample`s (a frozen encoder) or `ImageMaskSample`s (the encoder trained
    too), never a mix; which kind the config's ``encoder_mode`` needs is the model side's check."""

    model: api.ModelRef
    samples: list[api.MaskSample] | list[ImageMaskSampleIn] = Field(min_length=1, max_length=MAX_TRAIN_SAMPLES)
    config: dict[str, Any] = Field(default_factory=dict)
    out_key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    work_prefix: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)

    def api_samples(self) -> list[api.MaskSample] | list[api.ImageMaskSample]:
        """The samples as the `api` value types `ModelService.retrain` takes."""
        images = [s for s in self.samples if isinstance(s, ImageMaskSampleIn)]
        if images:  # the union is of lists: all or none
            return [api.ImageMaskSample(s.image_key, s.rle.model_dump(mode="json")) for s in images]
        return [s for s in self.samples if isinstance(s, api.MaskSample)]


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
