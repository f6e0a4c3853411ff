"""Rounds that train the image encoder, on a CPU with the tiny `vit_test` encoder: the whole model
learns (encoder weights move, the loss on the training masks falls), the held-out embeddings
come from the new encoder, resume is exact, last-k and LoRA train only what they say (LoRA
leaves a plain model), gradient accumulation and 2 gloo DDP processes under torchrun give the
one-process result on the same global batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model_server.sam import build_sam
from model_server.samples import MaskSample
from model_server.training import TrainConfig, embed_image_samples, image_samples, train_round
from model_server.training.distributed import launch, write_job
from model_server.training.encoder import prepare_encoder
from model_server.training.image_samples import pixels
from model_server.training.loop import _low_res_target
from model_server.training.losses import sam_loss

# One click per session, so a step is two decoder passes per mask.
TINY = dict(
    steps=3,
    batch_size=2,
    clicks_per_sample=1,
    no_point_rounds=0,
    warmup_steps=1,
    checkpoint_every=2,
    lr=1e-3,
    allow_cpu_encoder_training=True,
)


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(1)
    items = []
    for i in range(2):
        image = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        mask = np.zeros((48, 64), dtype=bool)
        mask[10 + 2 * i : 34, 12 : 44 + 3 * i] = True
        image[mask] += 150
        items.append((image, [mask]))
    return image_samples(items)


def fresh_model():
    return build_sam("vit_test", seed=0)


def encoder_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.image_encoder.state_dict().items()}


def box_loss(model, samples) -> float:
    """SAM loss of the model's single mask for each mask's exact box prompt (no randomness)."""
    with torch.no_grad():
        embeddings = model.image_encoder(pixels(model, samples))
        targets = [_low_res_target(s) for s in samples]
        boxes = []
        for target, _ in targets:
            ys, xs = np.nonzero(target)
            boxes.append([(xs.min() * 4.0, ys.min() * 4.0), (xs.max() * 4.0 + 3, ys.max() * 4.0 + 3)])
        sparse = model.prompt_encoder.embed_points(torch.tensor(boxes), torch.tensor([[2, 3]] * len(samples)))
        logits, iou = model.mask_decoder(
            embeddings, model.prompt_encoder.get_dense_pe(), sparse, model.prompt_encoder.embed_masks(None), False
        )
        target = torch.from_numpy(np.stack([t for t, _ in targets]))[:, None]
        valid = torch.from_numpy(np.stack([v for _, v in targets]))[:, None]
        return float(sam_loss(logits, iou, target, valid).total)


def test_whole_model_round_moves_the_encoder_lowers_the_loss_and_re_embeds(samples):
    model = fresh_model()
    before, loss_before = encoder_state(model), box_loss(model, samples)
    old_embeddings = embed_image_samples(model, samples)
    result = train_round(model, samples, TrainConfig(**{**TINY, "steps": 6, "batch_size": 1, "encoder_mode": "full"}))
    assert result.steps_done == 6 and all(np.isfinite(result.losses))
    after = encoder_state(model)
    assert all(not torch.equal(before[k], after[k]) for k in ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight"))
    assert box_loss(model, samples) < 0.8 * loss_before
    # Held-out evaluation embeds with the encoder just trained: not the old embeddings.
    new_embeddings = embed_image_samples(model, samples)
    assert isinstance(new_embeddings[0], MaskSample)
    with torch.no_grad():
        direct = model.image_encoder(pixels(model, samples[:1]))[0].to(torch.float16).numpy()
    np.testing.assert_array_equal(new_embeddings[0].embedding, direct)
    assert not np.array_equal(new_embeddings[0].embedding, old_embeddings[0].embedding)


def test_encoder_round_refuses_cached_embeddings(samples):
    embedded = embed_image_samples(fresh_model(), samples)
    with pytest.raises(ValueError, match="ImageSamples"):
        train_round(fresh_model(), embedded, TrainConfig(**TINY, encoder_mode="full"))


def test_last_k_trains_only_the_last_blocks_and_the_neck(samples):
    model = fresh_model()
    before = encoder_state(model)
    config = TrainConfig(**{**TINY, "steps": 1, "batch_size": 1}, encoder_mode="last_k", encoder_last_k=1)
    train_round(model, samples, config)
    after = encoder_state(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("blocks.1.", "neck.")) for k in changed)
    assert any(k.startswith("neck.") for k in changed) and any(k.startswith("blocks.1.") for k in changed)
    assert all(p.requires_grad for p in model.image_encoder.parameters())  # the module's default again
    with pytest.raises(ValueError, match="exceeds"):
        train_round(model, samples, TrainConfig(**TINY, encoder_mode="last_k", encoder_last_k=3))


def test_lora_starts_as_the_identity_trains_qkv_and_proj_and_merges_into_a_plain_model(samples):
    model = fresh_model()
    before = encoder_state(model)
    x = pixels(model, samples[:1])
    with torch.no_grad():
        reference = model.image_encoder(x)
        trainable = prepare_encoder(model, TrainConfig(**TINY, encoder_mode="lora"))
        assert torch.equal(model.image_encoder(x), reference)  # B = 0: adapters change nothing yet
    assert {tuple(p.shape) for p in trainable} == {(8, 32), (96, 8), (32, 8)}
    model = fresh_model()
    train_round(model, samples, TrainConfig(**{**TINY, "steps": 1}, encoder_mode="lora"))
    after = encoder_state(model)
    assert set(after) == set(before)  # merged: the official layout, loadable by build_sam
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"blocks.{b}.attn.{p}.weight" for b in (0, 1) for p in ("qkv", "proj")}


def assert_same_weights(model, reference, steps: int = 2) -> None:
    """Equal up to float rounding as AdamW amplifies it: a weight whose true gradient is zero
    (attention key biases: softmax ignores them) gets float noise as gradient and AdamW moves it by
    ~lr whatever the noise's size (measured: 2e-4 at lr 1e-3 on the decoder's k_proj biases). So:
    every element within the update bound, and on average over all weights within lr/100 (halves of
    a batch trained apart move most elements apart by a good fraction of lr; losses are compared too)."""
    lr = TINY["lr"]
    trained = model.state_dict()
    diff = torch.cat([(trained[k].double() - v.double()).abs().flatten() for k, v in reference.state_dict().items()])
    assert diff.max() <= steps * lr and diff.mean() <= lr / 100, (float(diff.max()), float(diff.mean()))


class Crash(RuntimeError):
    pass


def test_resume_after_a_crash_is_exact(samples, tmp_path: Path):
    # LoRA: the encoder's weights and its unmerged adapters are both training state.
    config = TrainConfig(**{**TINY, "steps": 3, "batch_size": 1}, encoder_mode="lora")
    reference = fresh_model()
    full = train_round(reference, samples, config)

    def crash_at_3(step: int, total: int, loss: float) -> None:
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        train_round(fresh_model(), samples, config, checkpoint_dir=tmp_path, progress=crash_at_3)
    resumed_model = fresh_model()
    resumed = train_round(resumed_model, samples, config, checkpoint_dir=tmp_path)
    assert resumed.losses == full.losses
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key


def test_gradient_accumulation_gives_the_full_batch_result():
    rng = np.random.default_rng(0)
    embedded = []
    for i in range(2):
        mask = np.zeros((48, 64), dtype=bool)
        mask[8 + i : 30, 10 : 40 + i] = True
        embedded.append(MaskSample(rng.standard_normal((256, 64, 64)).astype(np.float16), (48, 64), (768, 1024), mask))
    base = {**TINY, "batch_size": 2, "steps": 2}
    one, two = fresh_model(), fresh_model()
    a = train_round(one, embedded, TrainConfig(**base))
    b = train_round(two, embedded, TrainConfig(**base, accumulation_steps=2))
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5)
    assert_same_weights(two, one)
    with pytest.raises(ValueError, match="does not split"):
        train_round(fresh_model(), embedded, TrainConfig(**base, accumulation_steps=4))


def test_two_gloo_processes_under_torchrun_equal_one_process_on_the_same_global_batch(samples, tmp_path: Path):
    config = TrainConfig(**{**TINY, "steps": 2}, encoder_mode="full")
    single = fresh_model()
    expected = train_round(single, samples, config)
    write_job(tmp_path / "job", "vit_test", fresh_model(), samples, config, tmp_path / "checkpoints")
    trained, result = launch(tmp_path / "job", nproc_per_node=2, timeout_s=600)
    assert result.steps_done == 2 and (tmp_path / "checkpoints").is_dir()
    np.testing.assert_allclose(result.losses, expected.losses, rtol=1e-4)
    assert_same_weights(trained, single)


def test_train_command_refuses_a_folder_without_a_job(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "model_server", "train", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 2 and "no job.pt" in done.stderr
