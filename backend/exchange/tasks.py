"""Celery task `exchange.export_project` (queue ``auto``): a project's export archive written to storage.

For projects too large to stream in one request. The job's ``params`` are its inputs (``format``,
``include_images``, ``polygon_tolerance``); the archive is written to a local scratch file, then
stored at ``exports/<project id>/<job id>-<format>.tar`` (`Storage.put_file`: a rename for the local
folder, a streamed multipart upload for S3), so a crashed run leaves no half archive under that key
and a rerun simply writes it again. The result says where to download it and, for formats that
do not hold masks exactly (polygons, one label per pixel), the IoU each mask kept (``fidelity``).
"""

from __future__ import annotations

from typing import Any

from backend.exchange.archive import export_chunks
from backend.exchange.formats import POLYGON_FORMATS, ExportOptions, Fidelity
from backend.exchange.formats.common import DEFAULT_TOLERANCE
from backend.jobs.runner import JobContext, run_job
from backend.storage import scratch_file, storage_for
from backend.worker.celery_app import app


def export_key(project_id: int, job_id: int, fmt: str) -> str:
    return f"exports/{project_id}/{job_id}-{fmt}.tar"


def download_url(job_id: int) -> str:
    return f"/api/exports/{job_id}/file"


@app.task(name="exchange.export_project", acks_late=True, reject_on_worker_lost=True)
def export_project(job_id: int) -> str:
    return run_job(job_id, write_export)


def write_export(ctx: JobContext) -> dict[str, Any]:
    """The work of one export job; returns the job's result (storage key, download URL, sizes)."""
    db = ctx.db
    inputs = ctx.job().params
    fmt, include_images = inputs["format"], bool(inputs.get("include_images", False))
    options = ExportOptions(polygon_tolerance=float(inputs.get("polygon_tolerance", DEFAULT_TOLERANCE)))
    fidelity = Fidelity()
    project_id = ctx.project().id
    storage = storage_for(ctx.settings)
    key = export_key(project_id, ctx.job_id, fmt)
    last = [0.0]

    def progress(fraction: float) -> None:
        if fraction - last[0] >= 0.01 or fraction >= 1.0:  # at most ~100 progress commits
            last[0] = fraction
            ctx.progress(int(fraction * 1000), 1000, f"exporting: {fraction:.0%}")

    tmp = scratch_file(ctx.settings, ".tar")
    try:
        with tmp.open("wb") as out:
            for chunk in export_chunks(db, storage, project_id, fmt, include_images, progress, options, fidelity):
                out.write(chunk)
        size = tmp.stat().st_size
        storage.put_file(key, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "format": fmt,
        "include_images": include_images,
        "storage_key": key,
        "download_url": download_url(ctx.job_id),
        "bytes": size,
        **({"polygon_tolerance": options.polygon_tolerance} if fmt in POLYGON_FORMATS else {}),
        "fidelity": fidelity.summary(),
    }
