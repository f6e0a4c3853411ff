"""Images imported from a list of URLs, as a job with progress: downloaded, then stored exactly as
uploads are (`backend.images.service.upload_images`: the same checks, deduplicated by content hash).

Celery task `exchange.import_urls` (job kind ``import_urls``, its ``params`` ``{"urls": [...]}``).
Each URL is fetched with a `TIMEOUT_SECONDS` timeout, no redirects beyond `MAX_REDIRECTS`, and at most
``settings.max_upload_bytes`` read (a longer body is refused without reading the rest); a URL that
fails (no answer, not 200, too large, not an image) is reported with its reason in the job's result
(``refused``) and the others go on. The file name is the URL path's last part. Images are stored in
batches of `BATCH`, so a long list commits as it goes and a rerun finds the stored ones duplicates.

Only a person starts it (a project's managers or ML engineers), and only at public hosts: requests go
through `backend.core.outbound` (no private, loopback or link-local address, redirects included), so
an import cannot make the server fetch from its own network.
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from backend.core.outbound import BlockedTarget, outbound_client
from backend.images.service import IncomingFile, upload_images
from backend.jobs.runner import JobContext, run_job
from backend.storage import storage_for
from backend.worker.celery_app import app

TIMEOUT_SECONDS = 20.0
MAX_REDIRECTS = 3
BATCH = 16
MAX_URLS = 10_000


class _Refused(Exception):
    pass


def file_name(url: str) -> str:
    return unquote(PurePosixPath(urlsplit(url).path).name) or "unnamed"


def download(client: httpx.Client, url: str, max_bytes: int) -> bytes:
    """The body of `url`; raises `_Refused` saying why not."""
    try:
        with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise _Refused(f"HTTP {response.status_code}")
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise _Refused(f"{declared} bytes is more than {max_bytes}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise _Refused(f"more than {max_bytes} bytes")
            return bytes(body)
    except BlockedTarget as error:
        raise _Refused(str(error)) from None
    except httpx.HTTPError as error:
        raise _Refused(f"{type(error).__name__}: {error}") from None


@app.task(name="exchange.import_urls", acks_late=True, reject_on_worker_lost=True)
def import_urls(job_id: int) -> str:
    return run_job(job_id, fetch_and_store)


def fetch_and_store(ctx: JobContext) -> dict[str, Any]:
    """The work of one URL import job; returns its result (counts, and each refused URL with why)."""
    urls: list[str] = list(ctx.job().params["urls"])
    project = ctx.project()
    storage = storage_for(ctx.settings)
    stored = duplicates = 0
    refused: list[dict[str, str]] = []
    with outbound_client(
        ctx.settings.outbound_allowed_networks,
        timeout=TIMEOUT_SECONDS,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
    ) as client:
        for start in range(0, len(urls), BATCH):
            batch: list[IncomingFile] = []
            names: dict[str, str] = {}
            for url in urls[start : start + BATCH]:
                try:
                    body = download(client, url, ctx.settings.max_upload_bytes)
                except _Refused as error:
                    refused.append({"url": url, "reason": str(error)})
                    continue
                batch.append(IncomingFile(file_name(url), io.BytesIO(body)))
                names[file_name(url)] = url
            report = upload_images(ctx.db, storage, ctx.settings, project, batch, partial=True)
            stored += len(report.images)
            duplicates += len(report.duplicates)
            refused += [{"url": names.get(r.file_name, r.file_name), "reason": r.reason} for r in report.rejected]
            done = min(start + BATCH, len(urls))
            ctx.progress(done, len(urls), f"{done}/{len(urls)} URLs: {stored} stored, {len(refused)} refused")
    return {"urls": len(urls), "stored": stored, "duplicates": duplicates, "refused": refused}
