"""A retraining round of `InProcessModelService.retrain`: its config checked, its samples read, and
the training run, resumable from storage.

Separate from the service because a round is the one operation with several ways to run and state
that outlives the call; the service only fetches the parent's weights and stores the trained ones.

* A round trains the decoder side on stored embeddings (`api.MaskSample`, encoder_mode "frozen")
  or the image encoder too on the stored images (`api.ImageMaskSample`, read as `embed` reads them;
  on a CPU only when the config allows it, since a real encoder takes days there).
* It runs in this process or, with ``train_processes`` > 1, in that many DDP processes under
  torchrun (`training.distributed`; progress is rank 0's progress file, polled, so it may skip
  steps).
* The run's checkpoints go to ``work_prefix`` in storage either way (`_WorkState`), so a rerun
  resumes on any service with any process count.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_server import api
from model_server.service import stored_samples
from model_server.storage import Storage

if TYPE_CHECKING:
    import torch


def train_config(config: Mapping[str, Any], device: torch.device, processes: int) -> Any:
    """The round's `TrainConfig`; ValueError for unknown fields, bad values, an effective batch
    that does not split over the training processes, or encoder training on a CPU unasked."""
    from model_server.training import TrainConfig

    if not isinstance(config, Mapping):
        raise ValueError(f"training config must be an object, got {config!r}")
    try:
        checked = TrainConfig(**config)
    except TypeError as error:
        raise ValueError(f"training config: {error}") from None
    checked.micro_batch(processes)
    if checked.trains_encoder and device.type != "cuda" and not checked.allow_cpu_encoder_training:
        raise ValueError(
            f"encoder_mode {checked.encoder_mode!r} trains the image encoder, and this model service "
            f"runs on a CPU ({device}), where that takes days for a real encoder: run the round on a "
            "model service with a GPU, or train the decoder only (encoder_mode 'frozen'); tests with the "
            "tiny vit_test encoder set allow_cpu_encoder_training (the backend's "
            "DATAENGINE_ALLOW_CPU_ENCODER_TRAINING)"
        )
    return checked


def train_samples(storage: Storage, samples: Sequence[Any], config: Any) -> list[Any]:
    """The library's samples of the round: images for a round that trains the encoder, stored
    embeddings for a frozen-encoder one (ValueError naming the first sample of the other type)."""
    if config.trains_encoder:
        return stored_samples.image_samples(storage, samples, config.encoder_mode)
    for i, sample in enumerate(samples):
        if not isinstance(sample, api.MaskSample):
            raise ValueError(
                "encoder_mode 'frozen' trains the decoder on cached embeddings: every sample must be a "
                f"MaskSample (embedding, rle), but sample {i} is a {type(sample).__name__}; "
                "ImageMaskSamples are for rounds that train the image encoder"
            )
    return stored_samples.mask_samples(storage, samples)


def train(
    architecture: str,
    checkpoint: Path,
    samples: list[Any],
    config: Any,
    *,
    storage: Storage,
    device: torch.device,
    processes: int,
    work_dir: Path,
    work_prefix: str | None,
    progress: api.TrainProgress | None,
    should_stop: api.ShouldStop | None,
) -> tuple[Any, Any]:
    """Train the model of `checkpoint` on `samples`: the trained model and the `TrainResult`.

    `work_dir` holds the run's local files (removed after); the newest checkpoint is restored from
    `work_prefix` before and synced back to it at each progress report and at the end."""
    from model_server.sam.build import build_sam

    # Several processes train on their own devices: here the model is only written out and saved.
    sam = build_sam(architecture, checkpoint=checkpoint, device=device if processes == 1 else "cpu")
    with tempfile.TemporaryDirectory(dir=work_dir) as work:
        state = _WorkState(storage, work_prefix, Path(work) / "checkpoints")
        state.restore()

        def report(step: int, total: int, loss: float) -> None:
            state.sync()
            if progress is not None:
                progress(step, total, loss)

        if processes > 1:
            # DDP under torchrun, one GPU each; the trained model comes back on the CPU. Progress is
            # what rank 0 last wrote to the job's progress file, read while the processes run (coarse:
            # steps between two polls are reported once, by the newest); a stop request becomes the
            # job's stop file (`distributed.request_stop`).
            from model_server.training.distributed import launch, write_job

            job = Path(work) / "job"
            write_job(job, architecture, sam, samples, config, state.folder)
            sam, result = launch(job, processes, progress=report, should_stop=should_stop)
        else:
            from model_server.training import train_round

            result = train_round(
                sam, samples, config, checkpoint_dir=state.folder, progress=report, should_stop=should_stop
            )
        state.sync()
    return sam, result


class _WorkState:
    """A retraining run's resumable state, kept in storage under `prefix` so that a rerun on any
    model service continues from it: the newest training checkpoint is read into `folder` before the
    run and each new one written back as the run saves it."""

    def __init__(self, storage: Storage, prefix: str | None, folder: Path) -> None:
        self.storage = storage
        self.prefix = prefix.rstrip("/") + "/" if prefix else None
        self.folder = folder
        self._synced: str | None = None

    def restore(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.prefix is None:
            return
        from model_server.training.checkpoints import CHECKPOINT_GLOB

        names = [key for key in self.storage.list(self.prefix) if Path(key).match(CHECKPOINT_GLOB)]
        if names:
            newest = names[-1]  # zero-padded step numbers: sorted order is step order
            self.storage.download(newest, self.folder / Path(newest).name)
            self._synced = Path(newest).name

    def sync(self) -> None:
        """Write the newest local checkpoint to storage if it is new; drop the older stored ones."""
        if self.prefix is None:
            return
        from model_server.training.checkpoints import latest_checkpoint

        newest = latest_checkpoint(self.folder)
        if newest is None or newest.name == self._synced:
            return
        try:
            f = newest.open("rb")
        except FileNotFoundError:  # torchrun's rank 0 replaced it meanwhile: the next sync writes that one
            return
        with f:
            self.storage.put_stream(self.prefix + newest.name, f)
        for key in list(self.storage.list(self.prefix)):
            if key != self.prefix + newest.name:
                self.storage.delete(key)
        self._synced = newest.name
