"""Object storage with no file paths in it: images, thumbnails, embeddings, model artifacts, exports.

Both sides of the model boundary open the same store from their own settings (the backend from
`Settings.storage_url`, the model service from its ``--storage`` option), so the model-service
protocol passes storage keys and no two processes need to share a disk. Keys are relative POSIX
names such as ``images/ab/abcd....jpg``; a key never escapes its store.

Two backends, one behaviour (tests/model_server/test_storage.py runs the same suite on both):
`LocalStorage` (a folder, the embedded default) and `S3Storage` (any S3-protocol server: AWS S3,
MinIO). Every write is atomic: a reader sees the whole old object or the whole new one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol


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
