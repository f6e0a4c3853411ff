"""The wire encodings of an image embedding for the browser's decoder (`ModelService.embedding_wire`).

``float16``: the stored values as they are, 2 MiB per image (1x256x64x64 little-endian).
``int8-per-channel``: half of that: 256 float32 scales, then the values as int8, C order; a value is
``q * scale`` of its channel (symmetric, ``scale = max|x| / 127``). Per channel because SAM's
embedding channels differ in range by more than 10x, so one scale for all would spend most of the
256 levels on a few channels. The browser's decoder is `frontend/src/inference/int8.ts`; what the
masks lose against float16 is measured by benchmarks/embedding_encoding.py (table in
benchmarks/README.md).

NumPy only: the HTTP client and tests decode with it too.
"""

from __future__ import annotations

import numpy as np

from model_server import api

CHANNELS = 256


def quantize_int8(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(256,) float32 scales and int8 values of the shape given, for a (1x)256xHxW embedding."""
    channels = np.asarray(values, dtype=np.float32).reshape(CHANNELS, -1)
    peak = np.abs(channels).max(axis=1)
    scales = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    q = np.clip(np.rint(channels / scales[:, None]), -127, 127).astype(np.int8)
    return scales, q.reshape(np.shape(values))


def encode(embedding: np.ndarray, encoding: str) -> bytes:
    """The browser's bytes of a 256x64x64 (or 1x256x64x64) embedding in `encoding`.

    Raises:
        ValueError: an encoding other than `api.WIRE_ENCODINGS`.
    """
    if encoding not in api.WIRE_ENCODINGS:
        raise ValueError(f"unknown embedding encoding {encoding!r}; expected one of {api.WIRE_ENCODINGS}")
    float16 = api.embedding_to_bytes(embedding)
    if encoding == api.WIRE_FLOAT16:
        return float16
    scales, q = quantize_int8(np.frombuffer(float16, dtype="<f2"))
    return scales.astype("<f4").tobytes() + q.tobytes()


def decode_int8(body: bytes) -> np.ndarray:
    """float32 values of an ``int8-per-channel`` body, flat (as the browser's decoder gives them)."""
    scales = np.frombuffer(body, dtype="<f4", count=CHANNELS)
    q = np.frombuffer(body, dtype=np.int8, offset=4 * CHANNELS).reshape(CHANNELS, -1)
    return (q.astype(np.float32) * scales[:, None]).ravel()
