"""Build SAM variants by name, optionally loading a checkpoint strictly.

The variants differ only in the image encoder; the prompt encoder and mask decoder (4.06M
parameters) are the same for all. `vit_h`, `vit_l` and `vit_b` are the official configurations
and load `sam_vit_h_4b8939.pth`, `sam_vit_l_0b3195.pth` and `sam_vit_b_01ec64.pth` unchanged.
`vit_t` is ours: a narrow, shallow encoder for CPU-only installs (no official weights exist; it
gets weights by training in this engine, or starts untrained).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import PIXEL_MEAN, PIXEL_STD, Sam

SAM_CONFIGS: dict[str, dict[str, Any]] = {
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": (7, 15, 23, 31)},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": (5, 11, 17, 23)},
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11)},
    # Ours, chosen by measurement: see the vit_t note in `build_sam`.
    "vit_t": {"embed_dim": 192, "depth": 8, "num_heads": 3, "global_attn_indexes": (3, 7)},
}

# Not a product variant (not in `available_models`): the smallest encoder with the real module
# layout, for tests of encoder training on a CPU (two windowed blocks of width 32; the 256-channel
# neck is most of its cost).
TEST_CONFIGS: dict[str, dict[str, Any]] = {
    "vit_test": {"embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": ()},
}


def available_models() -> list[str]:
    """Names accepted by `build_sam`."""
    return list(SAM_CONFIGS)


def build_sam(
    name: str,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
) -> Sam:
    """Build the `name` variant, in eval mode.

    checkpoint: a state dict saved with `torch.save` (raw, or under the key "model"), loaded strictly;
        a file that is not a checkpoint, is truncated or holds another architecture raises ValueError
        naming the file and what is wrong.
    device: where the parameters live; "meta" builds without allocating memory (for shape checks).
    seed: without a checkpoint, the random initialisation is drawn from this seed (the global RNG is
        left untouched), which makes the product's "untrained" model reproducible.

    vit_t (embed_dim 192, depth 8, 3 heads, window 14, global attention in blocks 3 and 7; 5.2M encoder
    parameters): one 1024² image costs 1.5 CPU-seconds per thread with 2 threads (process time / 2,
    torch 2.13, measured on the shared 2-core development machine at load ~9, where wall time was
    ~7 s; uncontended, that is about 1.5 s wall or less). Global blocks dominate (4096² attention
    plus its bias): with 4 of them it was 1.6–1.8, with embed_dim 256 and 2 global blocks 1.6–1.9,
    with depth 12 and 3 global blocks 2.2–2.3.
    """
    configs = {**SAM_CONFIGS, **TEST_CONFIGS}
    if name not in configs:
        raise ValueError(f"unknown SAM variant {name!r}; available: {', '.join(available_models())}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    if checkpoint is not None:
        state_dict = _read_state_dict(Path(checkpoint))
        with torch.device("meta"):
            model = _build(configs[name])
        _check_state_dict(model, state_dict, name, Path(checkpoint))
        model.load_state_dict(state_dict, strict=True, assign=True)
        # Non-persistent buffers are not in the file: materialise them from a fresh module.
        model.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN), persistent=False)
        model.register_buffer("pixel_std", torch.tensor(PIXEL_STD), persistent=False)
        return model.to(device).eval()
    if device.type == "meta":
        with torch.device("meta"):
            return _build(configs[name]).eval()
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = _build(configs[name])
    return model.to(device).eval()


def _build(config: Mapping[str, Any]) -> Sam:
    return Sam(
        image_encoder=ImageEncoderViT(
            embed_dim=config["embed_dim"],
            depth=config["depth"],
            num_heads=config["num_heads"],
            global_attn_indexes=config["global_attn_indexes"],
        ),
        prompt_encoder=PromptEncoder(),
        mask_decoder=MaskDecoder(),
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types (zip, pickle, EOF) for bad files
        raise ValueError(
            f"checkpoint {path} is not a readable PyTorch state dict (truncated or not a checkpoint?): {exc}"
        ) from exc
    if isinstance(loaded, Mapping) and "model" in loaded and isinstance(loaded["model"], Mapping):
        loaded = loaded["model"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ValueError(f"checkpoint {path} does not hold a state dict (a mapping of names to tensors)")
    return {k: v.float() if v.is_floating_point() else v for k, v in loaded.items()}


def _check_state_dict(model: Sam, state_dict: Mapping[str, torch.Tensor], name: str, path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if state_dict[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_summarise(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_summarise(unexpected)})")
    if mismatched:
        problems.append(
            f"{len(mismatched)} shape mismatches ({'; '.join(mismatched[:3])}"
            + (", ..." if len(mismatched) > 3 else "")
            + ")"
        )
    guess = _guess_variant(state_dict)
    hint = f"; the file looks like {guess}" if guess and guess != name else ""
    raise ValueError(f"checkpoint {path} does not match SAM {name}: {'; '.join(problems)}{hint}")


def _summarise(keys: list[str], limit: int = 3) -> str:
    return ", ".join(keys[:limit]) + (", ..." if len(keys) > limit else "")


def _guess_variant(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The configuration whose encoder width and depth match the file, if any."""
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if patch is None:
        return None
    depth = 1 + max(
        (int(m.group(1)) for k in state_dict if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))), default=-1
    )
    for candidate, config in SAM_CONFIGS.items():
        if config["embed_dim"] == patch.shape[0] and config["depth"] == depth:
            return candidate
    return None
