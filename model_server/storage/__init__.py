"""Object storage with no file paths in it: images, thumbnails, embeddings, model artifacts, exports.

Both sides of the model boundary open the same store from their own settings (the backend from
`Settings.storage_url`, the model service from its ``--storage`` option), so the model-service
protocol passes storage keys and no two processes need to share a disk. Keys are relative POSIX
names such as ``images/ab/abcd....jpg``; a key never escapes its store.

Two backends, one behaviour (tests/model_server/test_storage.py runs the same suite on both):
`LocalStorage` (a folder, the embedded default) and `S3Storage` (any S3-protocol server: AWS S3,
MinIO). Every write is atomic: a reader sees the whole old object or the whole new one.
`open_storage(url)` builds the one a URL names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import parse_qs, unquote, urlsplit


class Storage(Protocol):
    """What every storage backend offers. A missing key raises `KeyError` (naming the key)."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing any object there."""
        ...

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        """Store what `stream` yields until EOF, read in chunks (never whole in memory)."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Store a local file (e.g. a checkpoint torch wrote) and remove it."""
        ...

    def get(self, key: str) -> bytes:
        """The whole object (for small objects: embeddings, thumbnails, graphs)."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A streaming binary reader of the object; the caller closes it."""
        ...

    def download(self, key: str, path: Path) -> None:
        """Copy the object to a local file, streamed (for libraries that need a file: torch.load)."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int:
        """The object's size in bytes."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key` if present (no error when missing)."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with `prefix`."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """The keys under `prefix`, in sorted order."""
        ...

    def url(self, key: str, expires_s: int = 3600) -> str | None:
        """A time-limited URL the browser can GET directly (presigned), or None when the API must
        stream the object itself (the local folder)."""
        ...


# Imported after the protocol they implement; `S3Storage` imports boto3 only when one is built.
from model_server.storage.local import LocalStorage  # noqa: E402
from model_server.storage.s3 import S3Storage  # noqa: E402

S3_OPTIONS = {"endpoint_url", "region", "presign"}


def open_storage(url: str) -> Storage:
    """The storage a URL names: a plain path or ``file:///abs/path`` (a local folder), or
    ``s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000&region=us-east-1`` (an S3-protocol
    bucket; credentials from the standard AWS variables; ``presign=false`` when the browser cannot
    reach the server, so the API streams objects instead of redirecting to them)."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        options = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = sorted(set(options) - S3_OPTIONS)
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)} in storage URL; known: {sorted(S3_OPTIONS)}")
        if not parts.netloc:
            raise ValueError(f"storage URL {url!r} names no bucket (s3://bucket/prefix)")
        presign = options.get("presign", "true").lower()
        if presign not in ("true", "false", "1", "0"):
            raise ValueError(f"presign must be true or false, not {presign!r}")
        return S3Storage(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=options.get("endpoint_url") or None,
            region=options.get("region") or None,
            presign=presign in ("true", "1"),
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"storage URL {url!r}: a file URL names an absolute path (file:///abs/path)")
        return LocalStorage(Path(unquote(parts.path)))
    if parts.scheme and len(parts.scheme) > 1:  # one letter: a Windows drive, a plain path
        raise ValueError(f"storage URL {url!r}: unknown scheme {parts.scheme!r} (a path, file:// or s3://)")
    if not url:
        raise ValueError("empty storage URL")
    return LocalStorage(Path(url))
