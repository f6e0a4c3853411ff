"""Answering a request with a stored object: a redirect to the store, or the bytes streamed.

When the storage gives a URL the browser can GET (S3's presigned URL), the answer is a 307 to it, so
the object's bytes never pass through the API; otherwise (the local folder, or an S3 server the browser
cannot reach) the API streams the object in chunks, never holding it whole. The route has checked who
may read it; the presigned URL is short-lived.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import BinaryIO

from fastapi import HTTPException, status
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from model_server.api import Storage

CHUNK = 256 * 1024
URL_SECONDS = 15 * 60


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    try:
        while chunk := stream.read(CHUNK):
            yield chunk
    finally:
        stream.close()


def stored_object(
    storage: Storage,
    key: str,
    media_type: str,
    *,
    missing: str,
    headers: Mapping[str, str] | None = None,
    filename: str | None = None,
) -> Response:
    """The object at `key` for the browser; 404 with `missing` as detail when it is not stored.
    `headers` (caching, ETag) go with the streamed bytes; a redirect is not cached (its URL expires)."""
    url = storage.url(key, expires_s=URL_SECONDS)
    if url is not None:
        return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    try:
        size = storage.size(key)
        stream = storage.open(key)
    except KeyError:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=missing) from None
    sent = {**(headers or {}), "Content-Length": str(size)}
    if filename is not None:
        sent["Content-Disposition"] = f'attachment; filename="{filename}"'
    return StreamingResponse(_chunks(stream), media_type=media_type, headers=sent)
