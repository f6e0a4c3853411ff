"""One image embedding per file: the format the CLI writes and the backend stores and serves.

Format: an uncompressed NumPy ``.npz`` archive (readable by any NumPy, no pickle) with exactly
these keys:

==================  =================  ===================================================
key                 shape / dtype      meaning
==================  =================  ===================================================
``embedding``       (256, 64, 64) f2   the image encoder's output, float16
``original_size``   (2,) int64         (h, w) of the original image, pixels
``input_size``      (2,) int64         (h, w) of the resized image inside the 1024 frame
``format_version``  () int64           1
==================  =================  ===================================================

Uncompressed because float16 activations barely compress (a few percent) and an uncompressed
member is read without inflating: 2 MiB per image. The two sizes are what the predictor needs to
map clicks and masks between the original image and the 1024 model frame without the encoder.

The model side writes these (to storage, as bytes: `embedding_bytes` / `parse_embedding`); this module
needs only NumPy.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

EMBEDDING_SHAPE = (256, 64, 64)
FORMAT_VERSION = 1
_KEYS = {"embedding", "original_size", "input_size", "format_version"}


def _size_pair(value, name: str) -> np.ndarray:
    pair = np.asarray(value)
    if pair.shape != (2,) or not np.issubdtype(pair.dtype, np.integer) or (pair <= 0).any():
        raise ValueError(f"{name} must be two positive integers (h, w), got {value!r}")
    return pair.astype(np.int64)


def embedding_bytes(embedding: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]) -> bytes:
    """One embedding file's bytes (what the model side stores under its embedding key).

    Args:
        embedding: 256x64x64 (or 1x256x64x64) floating array; stored as float16.
        original_size: (h, w) of the original image in pixels.
        input_size: (h, w) of the resized image in the 1024 model frame.
    """
    array = np.asarray(embedding)
    if array.shape == (1, *EMBEDDING_SHAPE):
        array = array[0]
    if array.shape != EMBEDDING_SHAPE or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"embedding must be a float array of shape {EMBEDDING_SHAPE}, got {array.dtype} {array.shape}")
    original = _size_pair(original_size, "original_size")
    inner = _size_pair(input_size, "input_size")
    if inner.max() > 1024:
        raise ValueError(f"input_size {tuple(inner)} does not fit the 1024 model frame")
    out = io.BytesIO()
    np.savez(
        out,
        embedding=array.astype(np.float16),
        original_size=original,
        input_size=inner,
        format_version=np.int64(FORMAT_VERSION),
    )
    return out.getvalue()


def parse_embedding(data: bytes, name: str) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """Read and validate an embedding file's bytes; `name` (its path or key) is in every error.

    Returns:
        ``embedding`` 256x64x64 float16, ``original_size`` (h, w) and ``input_size`` (h, w).

    Raises:
        ValueError: not an embedding file, or wrong keys, shapes or dtypes.
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            values = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{name}: not a readable embedding file ({error})") from error
    if set(values) != _KEYS:
        raise ValueError(f"{name}: expected keys {sorted(_KEYS)}, found {sorted(values)}")
    if int(values["format_version"]) != FORMAT_VERSION:
        raise ValueError(f"{name}: unsupported format_version {values['format_version']}")
    embedding = values["embedding"]
    if embedding.dtype != np.float16 or embedding.shape != EMBEDDING_SHAPE:
        raise ValueError(
            f"{name}: embedding must be float16 {EMBEDDING_SHAPE}, got {embedding.dtype} {embedding.shape}"
        )
    original = _size_pair(values["original_size"], f"{name}: original_size")
    inner = _size_pair(values["input_size"], f"{name}: input_size")
    return embedding, (int(original[0]), int(original[1])), (int(inner[0]), int(inner[1]))


def save_embedding(
    path: str | Path,
    embedding: np.ndarray,
    original_size: tuple[int, int],
    input_size: tuple[int, int],
) -> Path:
    """Write one embedding file atomically (a reader never sees a half-written file); see
    `embedding_bytes` for the arguments. `path` must end in ``.npz``. Returns the path written."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"embedding files end in .npz, got {path}")
    data = embedding_bytes(embedding, original_size, input_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def load_embedding(path: str | Path) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """Read and validate an embedding file (see `parse_embedding`; a missing file is a ValueError too)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: not a readable embedding file ({error})") from error
    return parse_embedding(data, str(path))
