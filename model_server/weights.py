"""Checkpoint files as the product registers them: untrained weights, strict checks, decoder export.

The backend never imports torch, yet it must (a) write the untrained model's weights once so every
process serves the same ones, (b) check an imported official checkpoint strictly before recording
it, and (c) export the browser decoder of a checkpoint. These three functions do that on files.
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


def save_untrained_checkpoint(architecture: str, path: str | Path, seed: int = UNTRAINED_SEED) -> str:
    """Write the seeded random weights of `architecture` to `path` (atomically); return their sha256.

    Saved once per install: later processes load this file rather than re-drawing the weights, so
    the weights and the recorded sha256 cannot drift apart across torch versions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_sam(architecture, seed=seed)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(model.state_dict(), tmp)
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
    torch.save(model.state_dict(), tmp)
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


def export_browser_decoder(architecture: str, checkpoint: str | Path, path: str | Path) -> Path:
    """Export the prompt encoder + mask decoder of a checkpoint as the browser's ONNX graph."""
    from model_server.export import export_decoder_onnx

    model = build_sam(architecture, checkpoint=checkpoint)
    with _export_lock:
        return export_decoder_onnx(model, path)
