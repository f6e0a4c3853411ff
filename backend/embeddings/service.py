"""Image embeddings: computed and stored by the model side, recorded here as rows.

The model side (`ModelService.embed`) writes each embedding object itself, keyed by its image
encoder's identity and the image, and skips images whose object exists; a row records that key and
the image's two sizes (`EmbeddingInfo`), and the backend never reads or writes the object (the
browser's bytes come from `ModelService.embedding_wire`). Versions with the same image encoder
(``model_versions.encoder_sha256``: a retrained decoder, a promoted round) share embeddings: a
version's row is added pointing at an existing row's object, without asking the model at all.

A row is inserted and committed only after its object is in place, so a row always points at a
whole embedding. Two writers may race for the same embedding (a job and an on-demand request): the
unique (image, model version) constraint keeps one row, and the loser reads the winner's.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.clients.model_server import EmbeddingInfo, ModelService
from backend.model_versions.service import encoder_sha256, model_ref
from backend.tables import Embedding, Image, ModelVersion
from model_server import api
from model_server.api import Storage


def info(row: Embedding) -> EmbeddingInfo:
    """The model side's name of the row's embedding."""
    return EmbeddingInfo(row.storage_key, (row.original_h, row.original_w), (row.input_h, row.input_w))


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


def _shared(db: Session, encoder: str, image_ids: Sequence[int]) -> dict[int, EmbeddingInfo]:
    """image id -> an existing embedding of the image by a version with image encoder `encoder`."""
    rows = db.scalars(
        select(Embedding)
        .join(ModelVersion, ModelVersion.id == Embedding.model_version_id)
        .where(Embedding.image_id.in_(image_ids), ModelVersion.encoder_sha256 == encoder)
        .order_by(Embedding.id)
    )
    return {row.image_id: info(row) for row in rows}


def compute_embeddings(
    db: Session, storage: Storage, client: ModelService, version: ModelVersion, images: Sequence[Image]
) -> list[Embedding]:
    """`version`'s embedding rows of `images` (inserted and committed one by one): shared from a version
    with the same image encoder where one exists (and its object is still stored), the others embedded
    in one model call.

    Raises:
        ValueError: an image the model side cannot read or embed (naming it).
        ModelServiceError: the model service is unreachable or failed.
    """
    shared = _shared(db, encoder_sha256(db, client, version), [image.id for image in images])
    shared = {image_id: found for image_id, found in shared.items() if storage.exists(found.key)}
    todo = [image for image in images if image.id not in shared]
    computed = client.embed(model_ref(version), [image.storage_key for image in todo]) if todo else []
    infos = {**shared, **{image.id: found for image, found in zip(todo, computed)}}
    return [_insert(db, version, image, infos[image.id]) for image in images]


def embedding_row(model_version_id: int, image_id: int, found: EmbeddingInfo) -> Embedding:
    """A new (not added) row recording `found` as the image's embedding by the version: for a caller
    that inserts it in its own commit, e.g. a retraining round registering its version together with
    the held-out embeddings it computed with the version's new encoder."""
    return Embedding(
        image_id=image_id,
        model_version_id=model_version_id,
        storage_key=found.key,
        dtype=api.EMBEDDING_DTYPE,
        shape=list(api.EMBEDDING_SHAPE),
        original_h=found.original_size[0],
        original_w=found.original_size[1],
        input_h=found.input_size[0],
        input_w=found.input_size[1],
    )


def _insert(db: Session, version: ModelVersion, image: Image, found: EmbeddingInfo) -> Embedding:
    row = embedding_row(version.id, image.id, found)
    db.add(row)
    try:
        db.commit()
    except IntegrityError:  # another writer stored the same embedding first
        db.rollback()
        stored = find_embedding(db, image.id, version.id)
        assert stored is not None  # the unique key that refused ours belongs to that row
        return stored
    return row


def get_or_compute(
    db: Session, storage: Storage, client: ModelService, version: ModelVersion, image: Image
) -> Embedding:
    """The image's embedding for `version`, computed now if missing (or if its object went missing)."""
    row = find_embedding(db, image.id, version.id)
    if row is not None and storage.exists(row.storage_key):
        return row
    if row is not None:
        db.delete(row)
        db.commit()
    return compute_embeddings(db, storage, client, version, [image])[0]
