"""Images imported from a prefix of an object store, as a job with progress: each object read through
the storage interface and stored exactly as uploads are (`backend.images.service.upload_images`: the
same checks, deduplicated by content hash), so a rerun finds the stored ones duplicates.

Celery task `exchange.import_bucket` (job kind ``import_bucket``, its ``params`` ``{"source": name,
"prefix": "..."}``). The sources are named by the operator, never by the request:
``Settings.import_sources`` maps a name to a storage URL (``s3://bucket/prefix?endpoint_url=...``,
credentials from the server's AWS variables, or a folder), so a manager can read only the stores the
operator opened to imports, and cannot point the server at another host or bucket.

Objects whose names do not end in an image suffix are counted (``ignored``) and left alone; one over
``settings.max_upload_bytes`` is refused without being read; each other object is copied into a
spooled temporary file (memory up to `SPOOL_BYTES`, then disk) and validated as an upload. A prefix
holding more than `MAX_OBJECTS` image objects is refused whole: import narrower prefixes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import PurePosixPath
from typing import Any, BinaryIO, cast

from backend.images.service import IMAGE_SUFFIXES, IncomingFile, upload_images
from backend.jobs.runner import JobContext, run_job
from backend.storage import storage_for
from backend.worker.celery_app import app
from model_server.api import Storage, open_storage

BATCH = 16
MAX_OBJECTS = 100_000
SPOOL_BYTES = 1024 * 1024


def source_storage(import_sources: dict[str, str], name: str, prefix: str) -> Storage:
    """The source `name` opened; `KeyError` for a name the operator did not configure, `ValueError`
    for a prefix no key can have. Listing is lazy, so checking the prefix costs no request."""
    storage = open_storage(import_sources[name])
    storage.list(prefix)
    return storage


@app.task(name="exchange.import_bucket", acks_late=True, reject_on_worker_lost=True)
def import_bucket(job_id: int) -> str:
    return run_job(job_id, list_and_store)


def _fetch(source: Storage, key: str, max_bytes: int) -> BinaryIO:
    """The object copied into a spooled temporary file; raises `ValueError` saying why not."""
    try:
        size = source.size(key)
        if size > max_bytes:
            raise ValueError(f"{size} bytes is more than {max_bytes}")
        spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        with source.open(key) as stream:
            shutil.copyfileobj(stream, spooled, SPOOL_BYTES)
    except KeyError:
        raise ValueError("deleted from the source while importing") from None
    spooled.seek(0)
    return cast(BinaryIO, spooled)


def list_and_store(ctx: JobContext) -> dict[str, Any]:
    """The work of one bucket import job; returns its result (counts, and each refused key with why)."""
    params = ctx.job().params
    name, prefix = params["source"], params["prefix"]
    if name not in ctx.settings.import_sources:
        raise ValueError(f"import source {name!r} is not configured (Settings.import_sources) any more")
    source = source_storage(ctx.settings.import_sources, name, prefix)
    keys: list[str] = []
    ignored = 0
    for key in source.list(prefix):
        if PurePosixPath(key).suffix.lower() not in IMAGE_SUFFIXES:
            ignored += 1
        elif len(keys) == MAX_OBJECTS:
            raise ValueError(f"more than {MAX_OBJECTS} images under {prefix!r}: import narrower prefixes")
        else:
            keys.append(key)
    project, storage = ctx.project(), storage_for(ctx.settings)
    stored = duplicates = 0
    refused: list[dict[str, str]] = []
    for start in range(0, len(keys), BATCH):
        batch: list[IncomingFile] = []
        names: dict[str, str] = {}
        try:
            for key in keys[start : start + BATCH]:
                try:
                    batch.append(
                        IncomingFile(PurePosixPath(key).name, _fetch(source, key, ctx.settings.max_upload_bytes))
                    )
                except ValueError as error:
                    refused.append({"key": key, "reason": str(error)})
                    continue
                names[PurePosixPath(key).name] = key
            report = upload_images(ctx.db, storage, ctx.settings, project, batch, partial=True)
        finally:
            for incoming in batch:
                incoming.stream.close()
        stored += len(report.images)
        duplicates += len(report.duplicates)
        refused += [{"key": names.get(r.file_name, r.file_name), "reason": r.reason} for r in report.rejected]
        done = min(start + BATCH, len(keys))
        ctx.progress(done, len(keys), f"{done}/{len(keys)} objects: {stored} stored, {len(refused)} refused")
    return {
        "source": name,
        "prefix": prefix,
        "objects": len(keys),
        "ignored": ignored,
        "stored": stored,
        "duplicates": duplicates,
        "refused": refused,
    }
