"""The training loop on synthetic cached embeddings: it trains only the decoder side, checkpoints,
resumes after a crash exactly where the uninterrupted run would be, stops on request, and refuses
bad input. (Quality on real images: test_training_grabcut.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_server.sam import build_sam
from model_server.samples import MaskSample
from model_server.training import TrainConfig, train_decoder
from model_server.training.loop import _low_res_target, _round_schedule
from model_server.transforms import preprocess_shape

# Tiny sessions keep each step to two decoder passes of one mask.
TINY = dict(steps=4, batch_size=1, clicks_per_sample=1, no_point_rounds=0, warmup_steps=2, checkpoint_every=2)


def make_samples(n: int = 3, h: int = 48, w: int = 64) -> list[MaskSample]:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        mask = np.zeros((h, w), dtype=bool)
        mask[8 + i : 30, 10 : 40 + i] = True
        embedding = rng.standard_normal((256, 64, 64)).astype(np.float16)
        samples.append(MaskSample(embedding, (h, w), preprocess_shape(h, w), mask))
    return samples


@pytest.fixture(scope="module")
def samples() -> list[MaskSample]:
    return make_samples()


def fresh_model():
    return build_sam("vit_t", seed=0)


def decoder_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("image_encoder")}


class Crash(RuntimeError):
    pass


def test_trains_decoder_only_and_resumes_after_a_crash_like_an_uninterrupted_run(samples, tmp_path: Path):
    config = TrainConfig(**TINY)
    reference = fresh_model()
    encoder_before = {k: v.clone() for k, v in reference.image_encoder.state_dict().items()}
    decoder_before = decoder_state(reference)
    seen: list[tuple[int, int]] = []
    full = train_decoder(reference, samples, config, progress=lambda s, n, loss: seen.append((s, n)))
    assert full.steps_done == 4 and len(full.losses) == 4 and all(np.isfinite(full.losses))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert full.checkpoint_path is None and not full.stopped_early
    assert all(torch.equal(v, reference.image_encoder.state_dict()[k]) for k, v in encoder_before.items())
    assert any(not torch.equal(v, decoder_state(reference)[k]) for k, v in decoder_before.items())

    def crash_at_3(step: int, total: int, loss: float) -> None:
        if step == 3:
            raise Crash("worker killed")

    crashed = fresh_model()
    with pytest.raises(Crash):
        train_decoder(crashed, samples, config, checkpoint_dir=tmp_path, progress=crash_at_3)
    assert [p.name for p in tmp_path.glob("checkpoint_*.pt")] == ["checkpoint_0000002.pt"]

    resumed_model = fresh_model()  # a new process: weights come back from the checkpoint
    steps: list[int] = []
    resumed = train_decoder(
        resumed_model, samples, config, checkpoint_dir=tmp_path, progress=lambda s, n, loss: steps.append(s)
    )
    assert steps == [3, 4]
    assert resumed.steps_done == full.steps_done == 4
    assert resumed.losses == pytest.approx(full.losses, rel=1e-5)
    assert resumed.checkpoint_path == tmp_path / "checkpoint_0000004.pt" and resumed.checkpoint_path.is_file()
    for k, v in decoder_state(reference).items():
        torch.testing.assert_close(decoder_state(resumed_model)[k], v, rtol=1e-4, atol=1e-5)

    # Finished: calling again does nothing more, and more steps continue from there.
    again = train_decoder(fresh_model(), samples, config, checkpoint_dir=tmp_path)
    assert again.steps_done == 4 and again.losses == resumed.losses
    longer = train_decoder(fresh_model(), samples, TrainConfig(**{**TINY, "steps": 5}), checkpoint_dir=tmp_path)
    assert longer.steps_done == 5 and longer.losses[:4] == resumed.losses


def test_should_stop_ends_early_with_a_checkpoint_to_resume_from(samples, tmp_path: Path):
    config = TrainConfig(**{**TINY, "checkpoint_every": 100})
    calls = iter([False, True])
    stopped = train_decoder(fresh_model(), samples, config, checkpoint_dir=tmp_path, should_stop=lambda: next(calls))
    assert stopped.stopped_early and stopped.steps_done == 1 and len(stopped.losses) == 1
    assert stopped.checkpoint_path == tmp_path / "checkpoint_0000001.pt"
    finished = train_decoder(
        fresh_model(), samples, TrainConfig(**{**TINY, "steps": 2, "checkpoint_every": 100}), checkpoint_dir=tmp_path
    )
    assert finished.steps_done == 2 and not finished.stopped_early and finished.losses[0] == stopped.losses[0]


def test_resume_refuses_a_checkpoint_of_another_run(samples, tmp_path: Path):
    train_decoder(fresh_model(), samples, TrainConfig(**{**TINY, "steps": 2}), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="lr"):
        train_decoder(fresh_model(), samples, TrainConfig(**{**TINY, "lr": 1e-3}), checkpoint_dir=tmp_path)
    (tmp_path / "checkpoint_0000009.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint_0000009"):
        train_decoder(fresh_model(), samples, TrainConfig(**TINY), checkpoint_dir=tmp_path)


def test_masks_covering_most_of_the_image_are_skipped_and_no_data_is_an_error(samples):
    h, w = 48, 64
    huge = MaskSample(samples[0].embedding, (h, w), preprocess_shape(h, w), np.ones((h, w), bool))
    with pytest.raises(ValueError, match="no training data"):
        train_decoder(fresh_model(), [huge], TrainConfig(**TINY))
    with pytest.raises(ValueError, match="no training data"):
        train_decoder(fresh_model(), [], TrainConfig(**TINY))


def test_bad_configs_and_samples_are_refused(samples):
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="on a CPU takes days"):
        train_decoder(fresh_model(), samples, TrainConfig(**TINY, encoder_mode="full"))
    with pytest.raises(ValueError, match="encoder_mode"):
        TrainConfig(encoder_mode="half")
    with pytest.raises(ValueError, match="empty"):
        MaskSample(samples[0].embedding, (4, 4), preprocess_shape(4, 4), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="256x64x64"):
        MaskSample(np.zeros((256, 32, 32), np.float32), (4, 4), preprocess_shape(4, 4), np.ones((4, 4), bool))


def test_round_schedule_has_the_papers_shape():
    config = TrainConfig()  # 1 initial prompt, 8 sampled points, 2 rounds without a new point
    schedule = _round_schedule(config, np.random.default_rng(0))
    assert len(schedule) == config.rounds == 11
    assert schedule[0] and not schedule[-1] and sum(schedule) == 9


def test_low_res_target_covers_the_resized_image_only():
    mask = np.zeros((100, 200), dtype=bool)
    mask[:, :100] = True  # left half
    sample = MaskSample(np.zeros((256, 64, 64), np.float16), (100, 200), preprocess_shape(100, 200), mask)
    target, valid = _low_res_target(sample)
    assert valid[:128, :].all() and not valid[128:].any()  # 512x1024 resized → 128x256 cells
    assert target[:128, :128].all() and not target[:, 128:].any()
