"""The real in-process model service, with its slow operations run once per test session.

The backend tests run the whole product on the untrained vit_t on a shared 2-core CPU, where writing
the weights and exporting the decoders takes ~20 s, an embedding a few seconds and the automatic
generator ~20 s per image. `MemoService` wraps the real `ModelService` the backend builds
(`model_server.api.in_process_service`) and computes each of those once per (weights, input); a repeat
copies the remembered objects into the test's own storage under the same keys, so every test still
runs the real tasks, storage and database. Everything else goes to the real service.

Use the `memo_models` fixture (import `memo_models_fixture` into the test module): it yields the
`Calls` of the test (the images embedded and given to the generator, by their bytes' sha256).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from backend.clients import model_server as builder
from model_server import api

_OBJECTS: dict[tuple[Any, ...], Any] = {}  # what the real service computed, by operation and input


@dataclass
class Calls:
    """The sha256 of each image asked of `embed` and of `automatic_masks`, in order."""

    embed: list[str] = field(default_factory=list)
    generator: list[str] = field(default_factory=list)


class MemoService:
    """A `ModelService` that remembers `create_untrained`, `export_decoders`, `embed` and
    `automatic_masks` of the real one (`real`) over `storage`."""

    calls = Calls()  # of the running test (`memo_models` starts a new one)

    def __init__(self, real: api.ModelService, storage: api.Storage) -> None:
        self.real, self.storage = real, storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def _copy_in(self, objects: Mapping[str, bytes]) -> None:
        for key, data in objects.items():
            if not self.storage.exists(key):
                self.storage.put_bytes(key, data)

    def create_untrained(self, architecture: str, checkpoint_key: str) -> api.ModelInfo:
        memo = ("untrained", architecture, checkpoint_key)
        if memo not in _OBJECTS:
            info = self.real.create_untrained(architecture, checkpoint_key)
            _OBJECTS[memo] = (info, {checkpoint_key: self.storage.get(checkpoint_key)})
        info, objects = _OBJECTS[memo]
        self.storage.put_bytes(checkpoint_key, objects[checkpoint_key])
        return info

    def export_decoders(self, model: api.ModelRef, prefix: str) -> dict[str, str]:
        memo = ("decoders", model.sha256, prefix)
        if memo not in _OBJECTS:
            keys = self.real.export_decoders(model, prefix)
            _OBJECTS[memo] = (keys, {key: self.storage.get(key) for key in keys.values()})
        keys, objects = _OBJECTS[memo]
        self._copy_in(objects)
        return dict(keys)

    def _image_sha(self, key: str) -> str:
        return hashlib.sha256(self.storage.get(key)).hexdigest()

    def embed(self, model: api.ModelRef, image_keys: Sequence[str]) -> list[api.EmbeddingInfo]:
        out = []
        for key in image_keys:
            image = self._image_sha(key)
            self.calls.embed.append(image)
            memo = ("embed", model.sha256, image, key)
            if memo not in _OBJECTS:
                (info,) = self.real.embed(model, [key])
                _OBJECTS[memo] = (info, {info.key: self.storage.get(info.key)})
            info, objects = _OBJECTS[memo]
            self._copy_in(objects)
            out.append(info)
        return out

    def automatic_masks(self, model: api.ModelRef, image_key: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        image = self._image_sha(image_key)
        self.calls.generator.append(image)
        memo = ("amg", model.sha256, image, repr(sorted(params.items())))
        if memo not in _OBJECTS:
            _OBJECTS[memo] = self.real.automatic_masks(model, image_key, params)
        return [dict(record) for record in _OBJECTS[memo]]


def remembered_records(image_sha: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The generator's records remembered for an image (by its bytes' sha256) and parameters."""
    return next(
        value
        for memo, value in _OBJECTS.items()
        if memo[0] == "amg" and memo[2] == image_sha and memo[3] == repr(sorted(params.items()))
    )


@pytest.fixture(name="memo_models")
def memo_models_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    """Every in-process model service the backend builds in this test is a `MemoService`; yields its calls."""
    real_factory = api.in_process_service
    monkeypatch.setattr(api, "in_process_service", lambda storage: MemoService(real_factory(storage), storage))
    monkeypatch.setattr(builder, "_last", None)
    MemoService.calls = Calls()
    yield MemoService.calls
    monkeypatch.setattr(builder, "_last", None)
