"""SAM modules: every variant builds; official names and shapes; strict checkpoint loading; errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_server.sam import SAM_CONFIGS, available_models, build_sam

OFFICIAL = ["vit_h", "vit_l", "vit_b"]


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def test_available_models():
    assert available_models() == list(SAM_CONFIGS) == ["vit_h", "vit_l", "vit_b", "vit_t"]
    with pytest.raises(ValueError, match="vit_x"):
        build_sam("vit_x")


@pytest.mark.parametrize("name", OFFICIAL)
def test_state_dict_names_and_shapes_match_official(sa, name):
    with torch.device("meta"):
        reference = sa.sam_model_registry[name]()
    ours = build_sam(name, device="meta")
    assert _shapes(ours) == _shapes(reference)
    assert {n for n, _ in ours.named_buffers()} == {n for n, _ in reference.named_buffers()}


def test_prompt_encoder_and_decoder_size_is_shared():
    sizes = set()
    for name in available_models():
        model = build_sam(name, device="meta")
        sizes.add(sum(p.numel() for m in (model.prompt_encoder, model.mask_decoder) for p in m.parameters()))
    assert len(sizes) == 1 and round(sizes.pop() / 1e6, 2) == 4.06


def test_vit_t_builds_runs_and_is_seeded():
    model = build_sam("vit_t", seed=0)
    again = build_sam("vit_t", seed=0)
    other = build_sam("vit_t", seed=1)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert not torch.equal(model.mask_decoder.iou_token.weight, other.mask_decoder.iou_token.weight)
    state = torch.random.get_rng_state()
    build_sam("vit_t", seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is left alone
    with torch.inference_mode():
        embedding = model.embed_images(torch.full((1, 3, 700, 1024), 128.0))
    assert embedding.shape == (1, 256, 64, 64) and torch.isfinite(embedding).all()
    assert model.pixel_mean.tolist() == pytest.approx([123.675, 116.28, 103.53])


def test_official_state_dict_loads_strictly(official_vit_b, tmp_path: Path):
    raw = tmp_path / "sam_vit_b.pth"
    wrapped = tmp_path / "wrapped.pth"
    torch.save(official_vit_b.state_dict(), raw)
    torch.save({"model": official_vit_b.state_dict(), "epoch": 3}, wrapped)
    for path in (raw, str(wrapped)):
        model = build_sam("vit_b", checkpoint=path)
        loaded = model.state_dict()
        for key, value in official_vit_b.state_dict().items():
            assert torch.equal(loaded[key], value), key
        assert model.pixel_mean.device.type == "cpu" and not model.training


def test_wrong_architecture_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "tiny.pth"
    torch.save(build_sam("vit_t", seed=0).state_dict(), path)
    with pytest.raises(ValueError) as error:
        build_sam("vit_b", checkpoint=path)
    message = str(error.value)
    assert str(path) in message and "missing keys" in message and "shape mismatches" in message
    assert "looks like vit_t" in message


def test_unexpected_keys_are_reported(tmp_path: Path):
    state = build_sam("vit_t", seed=0).state_dict()
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "extra.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"1 unexpected keys \(extra.weight\)"):
        build_sam("vit_t", checkpoint=path)


def test_bad_files_are_clear_errors(tmp_path: Path):
    good = tmp_path / "good.pth"
    torch.save(build_sam("vit_t", seed=0).state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    not_a_state_dict = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_a_state_dict)
    for path, message in [(truncated, "not a readable"), (text, "not a readable"), (not_a_state_dict, "state dict")]:
        with pytest.raises(ValueError, match=message) as error:
            build_sam("vit_t", checkpoint=path)
        assert str(path) in str(error.value)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_sam("vit_t", checkpoint=tmp_path / "missing.pth")
