"""Checkpoint files as the product registers them: untrained weights, strict checks, decoder export.

The backend never imports torch, yet it must (a) write the untrained model's weights once so every
process serves the same ones, (b) check an imported official checkpoint strictly before recording
it, and (c) export the browser decoder graphs of a checkpoint. These functions do that on files.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import torch

from model_server.sam.build import build_sam

UNTRAINED_SEED = 0

# torch.onnx.export keeps global state: two exports in one process at once fail.
_export_lock = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (checkpoints are up to 2.5 GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def encoder_sha256(image_encoder: torch.nn.Module) -> str:
    """Hex sha256 of an image encoder's weights: the identity of the embeddings it computes.

    Over every tensor of its state dict in sorted name order, each as name, dtype, shape and raw
    bytes, so it depends on the values alone (not on how a checkpoint file was pickled, nor on the
    rest of the model: versions retrained from one another keep the frozen encoder and share it).
    Take it before casting the encoder (e.g. to float16 on a GPU), so every device agrees.
    """
    digest = hashlib.sha256()
    state = image_encoder.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_untrained_checkpoint(architecture: str, path: str | Path, seed: int = UNTRAINED_SEED) -> str:
    """Write the seeded random weights of `architecture` to `path` (atomically); return their sha256.

    Saved once per install: later processes load this file rather than re-drawing the weights, so
    the weights and the recorded sha256 cannot drift apart across torch versions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_sam(architecture, seed=seed)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:  # a file object: the archive's inner name is fixed, not the file's name
        torch.save(model.state_dict(), f)
    os.replace(tmp, path)
    return file_sha256(path)


def save_model_checkpoint(model: torch.nn.Module, path: str | Path) -> str:
    """Write `model`'s state dict to `path` (atomically, via a temporary file); return its sha256.

    What a retraining round stores as its version's checkpoint: the same format as the official
    files, so `build_sam(architecture, checkpoint=path)` loads it strictly.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:  # a file object: the archive's inner name is fixed, not the file's name
        torch.save(model.state_dict(), f)
    os.replace(tmp, path)
    return file_sha256(path)


def verify_checkpoint(architecture: str, path: str | Path) -> str:
    """Load `path` strictly as `architecture`; return its sha256.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a state dict, truncated, or another architecture (the message says which).
    """
    build_sam(architecture, checkpoint=path)
    return file_sha256(path)


def export_browser_decoders(architecture: str, checkpoint: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Export every decoder graph the browser may run for a checkpoint into `out_dir`.

    The annotator prefers the split pair (a per-image graph run once when the embedding arrives, a
    per-click graph about 0.6x the official graph's latency: `model_server.export`); the one
    graph stays as the fallback for versions or clients without the pair.
    One checkpoint load serves all three exports.

    Returns:
        ``{"decoder": <dir>/decoder.onnx, "decoder_image": <dir>/decoder.image.onnx,
        "decoder_click": <dir>/decoder.click.onnx}``.
    """
    from model_server.export.writer import export_decoder_onnx, export_split_decoder

    out_dir = Path(out_dir)
    model = build_sam(architecture, checkpoint=checkpoint)
    with _export_lock:
        one = export_decoder_onnx(model, out_dir / "decoder.onnx")
        click, image = export_split_decoder(model, out_dir, prefix="decoder")
    return {"decoder": one, "decoder_image": image, "decoder_click": click}
