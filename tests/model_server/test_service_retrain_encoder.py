"""Whole-model rounds through the model service (`InProcessModelService.retrain` with
`api.ImageMaskSample`s), on a CPU with the tiny `vit_test` encoder: a round stopped and rerun from
its `work_prefix` ends with the very weights of the uninterrupted round, and two gloo processes
under torchrun (``train_processes=2``) end where one process does on the same global batch, with
progress reported and a stop request honoured across the process boundary."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model_server import api
from model_server.rle import coco_encode, masks_to_rle
from model_server.sam import build_sam
from model_server.service.in_process import InProcessModelService
from model_server.storage.local import LocalStorage
from tests.model_server.test_training_encoder import TINY, assert_same_weights

IMAGES = ("images/a.png", "images/b.jpg")
CONFIG = {**TINY, "checkpoint_every": 1, "encoder_mode": "full"}


def _rle(mask: np.ndarray) -> dict:
    return coco_encode(masks_to_rle(torch.as_tensor(mask)[None])[0])


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    """Two tiny pictures (PNG and JPEG), a bright rectangle on dark noise each."""
    storage = LocalStorage(tmp_path / "storage")
    rng = np.random.default_rng(1)
    for key, fmt in zip(IMAGES, ("PNG", "JPEG")):
        pixels = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        pixels[10:34, 12:44] += 150
        data = io.BytesIO()
        Image.fromarray(pixels).save(data, fmt)
        storage.put_bytes(key, data.getvalue())
    return storage


def _samples() -> list[api.ImageMaskSample]:
    mask = np.zeros((48, 64), dtype=bool)
    mask[10:34, 12:44] = True
    return [api.ImageMaskSample(key, _rle(mask)) for key in IMAGES]


def _service(storage: LocalStorage, tmp_path: Path, processes: int) -> tuple[InProcessModelService, api.ModelRef]:
    service = InProcessModelService(storage, tmp_path / f"cache{processes}", device="cpu", train_processes=processes)
    info = service.create_untrained("vit_test", "models/tiny.pth")
    return service, api.ModelRef("vit_test", "models/tiny.pth", info.sha256)


def _weights(storage: LocalStorage, key: str, tmp_path: Path) -> torch.nn.Module:
    path = tmp_path / Path(key).name
    storage.download(key, path)
    return build_sam("vit_test", checkpoint=path)


def test_a_stopped_whole_model_round_resumes_from_storage_to_the_same_weights(storage, tmp_path: Path):
    service, ref = _service(storage, tmp_path, 1)
    full = service.retrain(ref, _samples(), CONFIG, "models/full.pth")
    assert full.info is not None and full.steps_done == 3

    seen: list[int] = []
    stopped = service.retrain(
        ref,
        _samples(),
        CONFIG,
        "models/resumed.pth",
        work_prefix="work/run",
        progress=lambda step, total, loss: seen.append(step),
        should_stop=lambda: bool(seen),
    )
    assert stopped.stopped_early and stopped.steps_done == 1 and stopped.info is None
    assert list(storage.list("work/run/")) == ["work/run/checkpoint_0000001.pt"]
    # A fresh service (another machine: nothing local) continues from the stored checkpoint.
    other, _ = _service(storage, tmp_path / "other", 1)
    resumed = other.retrain(ref, _samples(), CONFIG, "models/resumed.pth", work_prefix="work/run")
    assert resumed == full  # the same steps, losses, file sha256 and encoder identity


def test_two_gloo_processes_train_the_round_one_process_does(storage, tmp_path: Path):
    single, ref = _service(storage, tmp_path, 1)
    expected = single.retrain(ref, _samples(), {**CONFIG, "steps": 2}, "models/one.pth")
    double, _ = _service(storage, tmp_path, 2)
    steps: list[tuple[int, int]] = []
    outcome = double.retrain(
        ref, _samples(), {**CONFIG, "steps": 2}, "models/two.pth", progress=lambda s, t, loss: steps.append((s, t))
    )
    assert outcome.steps_done == 2 and outcome.info is not None and expected.info is not None
    assert steps and steps[-1] == (2, 2)  # coarse: polled from rank 0's progress file
    np.testing.assert_allclose(outcome.losses, expected.losses, rtol=1e-4)
    assert_same_weights(_weights(storage, "models/two.pth", tmp_path), _weights(storage, "models/one.pth", tmp_path))
    assert outcome.info.encoder_sha256 == double.describe("vit_test", "models/two.pth").encoder_sha256
    assert outcome.info.encoder_sha256 != double.describe("vit_test", "models/tiny.pth").encoder_sha256


def test_a_distributed_round_stops_on_request_and_resumes_in_one_process(storage, tmp_path: Path):
    double, ref = _service(storage, tmp_path, 2)
    seen: list[int] = []
    stopped = double.retrain(
        ref,
        _samples(),
        {**CONFIG, "steps": 1000},
        "models/stopped.pth",
        work_prefix="work/ddp",
        progress=lambda step, total, loss: seen.append(step),
        should_stop=lambda: bool(seen),
    )
    assert stopped.stopped_early and 1 <= stopped.steps_done < 1000 and stopped.info is None
    assert not storage.exists("models/stopped.pth")
    assert list(storage.list("work/ddp/")) == [f"work/ddp/checkpoint_{stopped.steps_done:07d}.pt"]
    single, _ = _service(storage, tmp_path, 1)
    resumed = single.retrain(
        ref, _samples(), {**CONFIG, "steps": stopped.steps_done + 1}, "models/resumed.pth", work_prefix="work/ddp"
    )
    assert resumed.steps_done == stopped.steps_done + 1 and resumed.losses[:-1] == stopped.losses


def test_a_distributed_round_refuses_bad_input_as_a_value_error(storage, tmp_path: Path):
    double, ref = _service(storage, tmp_path, 2)
    with pytest.raises(ValueError, match="does not split into 2 processes"):
        double.retrain(ref, _samples(), {**CONFIG, "batch_size": 3}, "models/x.pth")
    # Refused inside the torchrun processes (every mask too large): raised here as the round's ValueError.
    with pytest.raises(ValueError, match="no training data"):
        double.retrain(ref, _samples(), {**CONFIG, "max_mask_fraction": 0.01}, "models/x.pth")
    assert not storage.exists("models/x.pth")
