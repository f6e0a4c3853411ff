"""Storing validated images, listing them, assigning them, deleting them, and thumbnails.

An HTTP upload is all-or-nothing by default: every file is validated first; if any is refused, the
request fails with a message naming each refused file and nothing is stored. A partial upload (the
browser's `?partial=true`, where one bad photo must not cost the other ninety-nine) and a folder import
(CLI) instead store what they can and report what they refused. Either way a file is first written to
a local scratch file (`backend.storage.scratch_file`), then stored under its content-hash key
(`Storage.put_file`: a rename for the local folder, a streamed multipart upload for S3), and the rows
are committed together; if the commit fails, files that this call created are removed again, so there
are never rows without files or new files without rows.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from PIL import Image as PILImage
from sqlalchemy import case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer_group

from backend.core.config import Settings
from backend.images.validation import ImageRejected, PreparedImage, prepare_image
from backend.selection.service import next_order, with_scores
from backend.storage import scratch_file
from backend.tables import Embedding, Image, ImageStatus, Project, ProjectMember, Stage, User
from model_server.api import Storage

MAX_NAME_CHARS = 255  # images.file_name is VARCHAR(255)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


class UploadRejected(ValueError):
    """One or more files of an all-or-nothing upload were refused; nothing was stored."""

    def __init__(self, rejections: Sequence[ImageRejected]) -> None:
        super().__init__("; ".join(str(r) for r in rejections))
        self.rejections = list(rejections)
        # The most severe status among the rejections decides the response (413 > 415 > 400).
        self.status_code = max((r.status_code for r in rejections), key=lambda c: {413: 3, 415: 2}.get(c, 1))


class UploadConflict(RuntimeError):
    """A concurrent upload stored the same content in the same project first; nothing was stored."""


class NotAMember(ValueError):
    """An image can only be assigned to a member of its project."""


@dataclass(frozen=True)
class IncomingFile:
    """A file to ingest: a seekable binary stream and the name the client gave it."""

    file_name: str
    stream: BinaryIO


@dataclass
class Duplicate:
    file_name: str
    image_id: int


@dataclass
class StoreResult:
    images: list[Image] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)


@dataclass
class ImportReport:
    images: list[Image] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    rejected: list[ImageRejected] = field(default_factory=list)


def clean_file_name(name: str | None) -> str:
    """The name an upload is shown and matched by: its base name (no client folders), NFC, without
    control or format characters (NUL, bidi overrides), at most `MAX_NAME_CHARS`; "unnamed" when
    nothing usable is left ("", ".", ".."). It is a display name, never a path: archives name their
    members themselves (`backend.exchange.formats.member_name`)."""
    text = unicodedata.normalize("NFC", name or "")
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    base = text.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base[:MAX_NAME_CHARS] if base not in ("", ".", "..") else "unnamed"


def image_key(sha256: str, ext: str) -> str:
    return f"images/{sha256[:2]}/{sha256}.{ext}"


def thumbnail_key(image: Image, size: int) -> str:
    return f"thumbnails/{size}/{image.sha256[:2]}/{image.sha256}.jpg"


def _prepare(settings: Settings, incoming: IncomingFile) -> PreparedImage:
    temp = scratch_file(settings)
    try:
        return prepare_image(
            incoming.stream,
            clean_file_name(incoming.file_name),
            temp,
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_image_pixels,
        )
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _discard(prepared: Iterable[PreparedImage]) -> None:
    for p in prepared:
        p.temp_path.unlink(missing_ok=True)


def store_prepared(db: Session, storage: Storage, project: Project, prepared: Sequence[PreparedImage]) -> StoreResult:
    """Move prepared files into storage and commit their rows together; duplicates are reported.

    A duplicate is content (sha256 of the stored bytes) already in the project, or repeated within
    `prepared`; it is not stored again. Temporary files are always consumed.
    """
    result = StoreResult()
    created_keys: list[str] = []
    try:
        shas = {p.sha256 for p in prepared}
        rows = db.execute(select(Image.sha256, Image.id).where(Image.project_id == project.id, Image.sha256.in_(shas)))
        existing = {sha: image_id for sha, image_id in rows}
        in_batch: dict[str, Image] = {}
        pending_dups: list[tuple[str, Image]] = []
        for p in prepared:
            if p.sha256 in existing:
                result.duplicates.append(Duplicate(p.file_name, existing[p.sha256]))
                continue
            if p.sha256 in in_batch:
                pending_dups.append((p.file_name, in_batch[p.sha256]))
                continue
            key = image_key(p.sha256, p.ext)
            if not storage.exists(key):  # the same content may already be stored for another project
                storage.put_file(key, p.temp_path)
                created_keys.append(key)
            row = Image(
                project_id=project.id,
                file_name=p.file_name,
                storage_key=key,
                sha256=p.sha256,
                width=p.width,
                height=p.height,
                size_bytes=p.size_bytes,
                status=ImageStatus.new,
            )
            db.add(row)
            in_batch[p.sha256] = row
            result.images.append(row)
        db.commit()
    except BaseException as exc:
        db.rollback()
        for key in created_keys:
            if db.scalar(select(Image.id).where(Image.storage_key == key).limit(1)) is None:
                storage.delete(key)
        if isinstance(exc, IntegrityError):
            raise UploadConflict("the same image was stored concurrently in this project; retry the upload") from exc
        raise
    finally:
        _discard(prepared)
    result.duplicates.extend(Duplicate(name, row.id) for name, row in pending_dups)
    return result


def upload_images(
    db: Session,
    storage: Storage,
    settings: Settings,
    project: Project,
    files: Sequence[IncomingFile],
    *,
    partial: bool = False,
) -> ImportReport:
    """Validate every file, then store them. All-or-nothing unless `partial`: a refused file raises
    `UploadRejected` and nothing is stored; with `partial` the good files are stored and the refused
    ones reported in `rejected`."""
    prepared: list[PreparedImage] = []
    rejected: list[ImageRejected] = []
    try:
        for incoming in files:
            try:
                prepared.append(_prepare(settings, incoming))
            except ImageRejected as exc:
                rejected.append(exc)
    except BaseException:
        _discard(prepared)
        raise
    if rejected and not partial:
        _discard(prepared)
        raise UploadRejected(rejected)
    stored = store_prepared(db, storage, project, prepared)
    return ImportReport(stored.images, stored.duplicates, rejected)


def import_folder(
    db: Session, storage: Storage, settings: Settings, project: Project, folder: Path, batch_size: int = 32
) -> ImportReport:
    """Import every image file under `folder` (recursively, sorted); bad files are skipped and reported."""
    if not folder.is_dir():
        raise ValueError(f"not a directory: {folder}")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    report = ImportReport()
    for start in range(0, len(paths), batch_size):
        prepared: list[PreparedImage] = []
        try:
            for path in paths[start : start + batch_size]:
                with path.open("rb") as stream:
                    try:
                        prepared.append(_prepare(settings, IncomingFile(path.name, stream)))
                    except ImageRejected as exc:
                        report.rejected.append(exc)
        except BaseException:
            _discard(prepared)
            raise
        stored = store_prepared(db, storage, project, prepared)
        report.images.extend(stored.images)
        report.duplicates.extend(stored.duplicates)
    return report


def list_images(
    db: Session, project: Project, status: ImageStatus | None, assigned_to: int | None, offset: int, limit: int
) -> tuple[Sequence[Image], int]:
    """One page of the project's images in upload order, and how many match the filters in all.

    The page is one statement: the mask counts and assignee names are its subqueries (`Image`'s
    `image_out` group), not a query per image."""
    where = [Image.project_id == project.id]
    if status is not None:
        where.append(Image.status == status)
    if assigned_to is not None:
        where.append(Image.assigned_to == assigned_to)
    total = db.scalar(select(func.count(Image.id)).where(*where)) or 0
    page = db.scalars(
        select(Image).where(*where).options(undefer_group("image_out")).order_by(Image.id).offset(offset).limit(limit)
    ).all()
    return page, total


def peek_next_image(db: Session, project: Project, user: User, exclude: int | None) -> Image | None:
    """The image `claim next` would give `user` now, without locking it (the annotate page prefetches
    it while the current one is worked on); `exclude`: the image the caller holds and is about to finish.

    The same candidates in the same order as `backend.annotation.service.claim_next_image`: the
    user's own live lock first, then images assigned to them, then unassigned ones, in the project's
    selection order (`backend.selection.service.next_order`);
    a guess, not a promise (someone may claim it first): the claim decides."""
    if project.archived_at is not None or project.stage == Stage.done:
        return None
    now = datetime.now(UTC)
    where = [
        Image.project_id == project.id,
        Image.status.in_((ImageStatus.new, ImageStatus.in_progress)),
        or_(Image.locked_until.is_(None), Image.locked_until < now, Image.assignee_id == user.id),
        or_(Image.assigned_to.is_(None), Image.assigned_to == user.id),
    ]
    if exclude is not None:
        where.append(Image.id != exclude)
    return db.scalar(
        with_scores(select(Image))
        .where(*where)
        .options(undefer_group("image_out"))
        .order_by(
            case((Image.assignee_id == user.id, 0), (Image.assigned_to == user.id, 1), else_=2), *next_order(project)
        )
        .limit(1)
    )


def assign_image(db: Session, image: Image, user_id: int | None) -> Image:
    """Reserve the image for `user_id` (a member of its project), or free it with None.

    Only claims change: the image is offered to its assignee first and refused to other annotators
    (`backend.annotation.service`); a claim someone holds now stays theirs until it ends."""
    if user_id is not None and db.get(ProjectMember, (image.project_id, user_id)) is None:
        raise NotAMember(f"user {user_id} is not a member of project {image.project_id}")
    image.assigned_to = user_id
    db.commit()
    db.expire(image)  # the assignee's name is a subquery: read it again
    return image


def delete_image(db: Session, storage: Storage, image: Image, thumbnail_size: int) -> None:
    """Delete `image` and everything of it in one transaction, then its files.

    The database's ON DELETE CASCADE removes what refers to the row: masks (and their reviews),
    embeddings, annotation sessions, detector proposals and the per-image rollup rows (every foreign
    key to images cascades; tests/backend/test_hostile_input.py checks the migrated schema); the
    dashboard triggers see the cascaded mask deletes, so the rollups stay exact. Files go after the
    commit, so a failed commit loses nothing; an object another image still uses stays: the stored
    file of the same bytes uploaded to another project, and an embedding object, which every row of
    the same encoder and content shares (`model_server.service.stored.embedding_key`).
    """
    embedding_keys = set(db.scalars(select(Embedding.storage_key).where(Embedding.image_id == image.id)))
    db.delete(image)
    db.commit()
    still_used = set(db.scalars(select(Embedding.storage_key).where(Embedding.storage_key.in_(embedding_keys))))
    for key in embedding_keys - still_used:
        storage.delete(key)
    if db.scalar(select(Image.id).where(Image.storage_key == image.storage_key).limit(1)) is None:
        storage.delete(image.storage_key)
    if db.scalar(select(Image.id).where(Image.sha256 == image.sha256).limit(1)) is None:
        storage.delete(thumbnail_key(image, thumbnail_size))


def ensure_thumbnail(storage: Storage, image: Image, size: int) -> str:
    """The storage key of the image's JPEG thumbnail (longest side <= `size`), made on first request."""
    key = thumbnail_key(image, size)
    if storage.exists(key):
        return key
    with storage.open(image.storage_key) as f, PILImage.open(f) as pil:
        pil.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster for big photos
        thumb = pil.convert("RGB")
        thumb.thumbnail((size, size))
        encoded = io.BytesIO()  # a few KB
        thumb.save(encoded, format="JPEG", quality=85)
    storage.put_bytes(key, encoded.getvalue())
    return key
