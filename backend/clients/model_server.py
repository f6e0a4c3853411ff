"""The one place the backend gets its model: a `model_server.api.ModelService` built from the settings.

Two modes, chosen by `Settings.model_server_url`:

* **embedded** (None, the default): the model runs in this process (`model_server.api.in_process_service`,
  imported lazily there, so importing the backend never loads torch).
* **HTTP** (``http://model-server:8001``): every operation goes to the model service
  (`python -m model_server serve`), which opens the same object storage from its own settings.

Either way requests name storage keys (images, checkpoints, embeddings, detectors), never local
paths, so the API, the workers and the model service share no disk. The service is built once per
process and storage (the in-process one keeps its loaded model between calls).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from model_server import api
from model_server.api import (
    DetectorSample,
    EmbeddingInfo,
    MaskSample,
    ModelInfo,
    ModelRef,
    ModelService,
    ModelServiceError,
    OperationCancelled,
    Proposals,
    ProposeParams,
    Storage,
    TrainOutcome,
)

if TYPE_CHECKING:
    from backend.core.config import Settings

__all__ = [
    "DetectorSample",
    "EmbeddingInfo",
    "MaskSample",
    "ModelInfo",
    "ModelRef",
    "ModelService",
    "ModelServiceError",
    "OperationCancelled",
    "Proposals",
    "ProposeParams",
    "TrainOutcome",
    "model_service",
]

_lock = threading.Lock()
_last: tuple[str | int, ModelService] | None = None  # one service (and loaded model) per process


def model_service(settings: Settings, storage: Storage) -> ModelService:
    """The model service of `settings`: in process over `storage` unless `model_server_url` is set
    (the service then opens the same object storage from its own settings)."""
    global _last
    url = settings.model_server_url
    key = url if url is not None else id(storage)  # `_last` holds `storage`, so its id is not reused
    with _lock:
        if _last is None or _last[0] != key:
            _last = (key, api.in_process_service(storage) if url is None else api.http_service(url))
        return _last[1]
