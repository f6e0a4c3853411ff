"""Image embeddings: computed through the model client, stored as files, recorded as rows.

Storage: one file per (image, model version) at ``embeddings/<version id>/<image id>.npz`` in the
format of `model_server.service.embedding_file` (256x64x64 float16 + original and input sizes; numpy only).
The row is inserted and committed only after its file is in place (the storage renames complete
files into place), so a row always points at a whole embedding; a crash between the two leaves at
most an unreferenced file, which the next run overwrites.

Two writers may race for the same embedding (a job and an on-demand request): the unique
(image, model version) constraint keeps one row, and the loser reads the winner's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.clients.model_server import ModelServerClient, ModelSpec
from backend.storage import LocalStorage
from backend.tables import Embedding, Image, ModelVersion
from model_server import api
from model_server.service.embedding_file import load_embedding, save_embedding


@dataclass(frozen=True)
class EmbeddingBytes:
    """An embedding as the browser gets it: 1x256x64x64 float16 little-endian bytes and its sizes."""

    data: bytes
    original_size: tuple[int, int]
    input_size: tuple[int, int]


def embedding_key(model_version_id: int, image_id: int) -> str:
    return f"embeddings/{model_version_id}/{image_id}.npz"


def load_image_rgb(storage: LocalStorage, image: Image) -> np.ndarray:
    """The stored image as HxWx3 uint8 RGB (stored files are already EXIF-oriented RGB)."""
    try:
        with PILImage.open(storage.path(image.storage_key)) as pil:
            return np.asarray(pil.convert("RGB"))
    except (OSError, SyntaxError) as error:
        raise ValueError(f"image {image.id} ({image.file_name}): stored file unreadable ({error})") from error


def find_embedding(db: Session, image_id: int, model_version_id: int) -> Embedding | None:
    return db.scalar(
        select(Embedding).where(Embedding.image_id == image_id, Embedding.model_version_id == model_version_id)
    )


def missing_image_ids(db: Session, project_id: int, model_version_id: int) -> list[int]:
    """Ids of the project's images without an embedding of `model_version_id`, in id order."""
    done = select(Embedding.image_id).where(Embedding.model_version_id == model_version_id)
    return list(
        db.scalars(select(Image.id).where(Image.project_id == project_id, Image.id.not_in(done)).order_by(Image.id))
    )


def compute_embeddings(
    db: Session,
    storage: LocalStorage,
    client: ModelServerClient,
    version: ModelVersion,
    spec: ModelSpec,
    images: Sequence[Image],
    arrays: Sequence[np.ndarray] | None = None,
) -> list[Embedding]:
    """Embed `images` in one client call, store each file, then insert and commit each row.

    `arrays` are the images' HxWx3 uint8 RGB pixels when the caller already read them.
    """
    if arrays is None:
        arrays = [load_image_rgb(storage, image) for image in images]
    results = client.embed(arrays, spec)
    rows = []
    for image, result in zip(images, results):
        key = embedding_key(version.id, image.id)
        tmp = storage.temp_path(".npz")
        try:
            save_embedding(tmp, result.embedding, result.original_size, result.input_size)
            storage.put_file(key, tmp)
        finally:
            tmp.unlink(missing_ok=True)
        row = Embedding(
            image_id=image.id,
            model_version_id=version.id,
            storage_key=key,
            dtype=api.EMBEDDING_DTYPE,
            shape=list(api.EMBEDDING_SHAPE),
            original_h=result.original_size[0],
            original_w=result.original_size[1],
            input_h=result.input_size[0],
            input_w=result.input_size[1],
        )
        db.add(row)
        try:
            db.commit()
        except IntegrityError:  # another writer stored the same embedding first
            db.rollback()
            stored = find_embedding(db, image.id, version.id)
            assert stored is not None  # the unique key that refused ours belongs to that row
            row = stored
        rows.append(row)
    return rows


def get_or_compute(
    db: Session,
    storage: LocalStorage,
    client: ModelServerClient,
    version: ModelVersion,
    spec: ModelSpec,
    image: Image,
) -> Embedding:
    """The image's embedding for `version`, computed now if missing (or if its file went missing)."""
    row = find_embedding(db, image.id, version.id)
    if row is not None and storage.exists(row.storage_key):
        return row
    if row is not None:
        db.delete(row)
        db.commit()
    return compute_embeddings(db, storage, client, version, spec, [image])[0]


def read_embedding(storage: LocalStorage, row: Embedding) -> EmbeddingBytes:
    embedding, original, inner = load_embedding(storage.path(row.storage_key))
    return EmbeddingBytes(api.embedding_to_bytes(embedding), original, inner)
