"""The stored objects the model side reads and writes: images, embeddings, and where embeddings go.

Embedding objects live at ``embeddings/<encoder sha256>/<image key's file stem>.npz`` (the format of
`embedding_file`): keyed by the encoder's identity, so model versions that share an encoder share
embeddings, and by the image, so an embedding is computed once. Only the model side writes them.

A missing key or an unreadable object is a ValueError naming the key: it is the caller's input.
"""

from __future__ import annotations

import io
import warnings
from pathlib import PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model_server import api
from model_server.service.embedding_file import parse_embedding
from model_server.storage import Storage


def embedding_key(encoder_sha256: str, image_key: str) -> str:
    """Where the embedding of the image stored at `image_key` under that encoder goes."""
    return f"embeddings/{encoder_sha256}/{PurePosixPath(image_key).stem}.npz"


def fetch(storage: Storage, key: str, what: str) -> bytes:
    """The whole object at `key`; ValueError naming `what` and the key when none is stored there."""
    if not isinstance(key, str):
        raise ValueError(f"{what} key must be a string, got {key!r}")
    try:
        return storage.get(key)
    except KeyError:
        raise ValueError(f"no {what} stored at {key!r}") from None


def read_embedding(storage: Storage, key: str) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """A stored embedding: 256x64x64 float16, original (h, w), input (h, w) in the 1024 frame."""
    return parse_embedding(fetch(storage, key, "embedding"), key)


def read_image(storage: Storage, key: str) -> np.ndarray:
    """A stored image as it is displayed: HxWx3 uint8 RGB, EXIF orientation applied.

    The pixel count is checked from the header before anything is decoded (a decompression bomb
    of a few KB is refused without allocating its pixels), against `api.MAX_IMAGE_PIXELS`.

    Raises:
        ValueError: nothing stored at `key`, not an image, too large, truncated or empty.
    """
    data = fetch(storage, key, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > api.MAX_IMAGE_PIXELS:
                    raise ValueError(
                        f"image {key!r} of {height}x{width} pixels exceeds the limit of {api.MAX_IMAGE_PIXELS}"
                    )
                array = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"image {key!r} is not a readable image ({error})") from error
    except (OSError, SyntaxError) as error:
        raise ValueError(f"image {key!r} is truncated or corrupt ({error})") from error
    if array.size == 0:
        raise ValueError(f"image {key!r} is empty")
    return array
