"""Compute image embeddings for image files and write one float16 embedding file per image.

This is the offline path (the CLI `python -m model_server embed`, and workers that embed a whole
project): images are read with Pillow, EXIF-transposed (a phone photo is embedded the way it is
shown), converted to RGB, resized with the model's own transforms and encoded in batches. The
files are read back with `model_server.service.embedding_file.load_embedding`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..sam import Sam
from .embedding_file import save_embedding
from .embedding_model import encode_images


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as it is displayed: HxWx3 uint8 RGB, EXIF orientation applied.

    Raises:
        ValueError: the file is missing, unreadable, not an image, empty, or a decompression bomb.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            array = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from error
    if array.size == 0:
        raise ValueError(f"{path}: empty image")
    return array


def embedding_path(out_dir: str | Path, image_path: str | Path) -> Path:
    """Where the embedding of `image_path` goes: `<out_dir>/<image stem>.npz`."""
    return Path(out_dir) / f"{Path(image_path).stem}.npz"


def embed_files(
    model: Sam,
    image_paths: Sequence[str | Path],
    out_dir: str | Path,
    batch_size: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Embed each image and write `<out_dir>/<stem>.npz` (256x64x64 float16 + sizes).

    Every image is opened before any encoding, so a bad file fails fast, before minutes of work.
    Two images with the same stem would overwrite each other's file, so that is refused too.

    Args:
        model: a `Sam` (ours): `preprocess` and `image_encoder` are used.
        image_paths: image files (anything Pillow reads).
        out_dir: destination folder, created if missing.
        batch_size: images encoded together (memory grows with it; on CPU 1-2 is enough).
        on_progress: called with (done, total) after each batch.

    Returns:
        The written paths, in the order of `image_paths`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    paths = [Path(p) for p in image_paths]
    if not paths:
        raise ValueError("no images given")
    targets = [embedding_path(out_dir, p) for p in paths]
    duplicates = sorted({t.name for t in targets if targets.count(t) > 1})
    if duplicates:
        raise ValueError(f"several images share a file stem, their embeddings would collide: {duplicates}")
    check_image_files(paths)
    written: list[Path] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        for path, result in zip(chunk, encode_images(model, [load_rgb(p) for p in chunk])):
            written.append(
                save_embedding(
                    embedding_path(out_dir, path), result.embedding[0], result.original_size, result.input_size
                )
            )
        if on_progress is not None:
            on_progress(len(written), len(paths))
    return written


def check_image_files(paths: Sequence[str | Path]) -> None:
    """Raise ValueError naming the first path that is missing or not an image.

    Only the header is parsed and the file verified, which is cheap: callers run it before loading
    a model or starting long work.
    """
    for path in map(Path, paths):
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        try:
            with Image.open(path) as image:
                image.verify()
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as error:
            raise ValueError(f"{path}: not a readable image ({error})") from error
