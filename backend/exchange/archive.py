"""Export archives generated incrementally: a tar stream whose bytes leave as each image is added.

`export_chunks` yields the archive piece by piece (the HTTP response streams them; the export job
writes them to a file), so memory holds one image's files at a time, never the whole archive.
Uncompressed tar (``w|``): images are already compressed and a stream needs no seeking.

The format's module (`formats.EXPORTERS`, one per format) writes the members through an `Archive`
and yields after each image; this module turns each yield into a chunk and a progress step. Files
that list every image (COCO's instances JSON, YOLO's ``data.yaml``) come last: a tar member's size
comes before its bytes, so they are first written to a local temporary file, image by image
(`Archive.spool`), and added at the end. Stored images are copied from their storage stream into the
tar (`Archive.add_stored`), never read whole.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy.orm import Session

from backend.exchange import source
from backend.exchange.formats import EXPORTERS, ExportOptions, Fidelity
from model_server.api import Storage

Progress = Callable[[float], None]
FIDELITY = "fidelity.json"  # the IoU each mask kept, in formats that do not hold masks exactly


class _Sink(io.RawIOBase):
    """A write-only file whose written bytes are taken out with `drain`."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]  # RawIOBase types it as a buffer
        self._chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class Archive:
    """The members of one export, written in order to a tar stream."""

    def __init__(self, tar: tarfile.TarFile, storage: Storage, include_images: bool) -> None:
        self._tar, self._storage, self._mtime = tar, storage, time.time()
        self.include_images = include_images
        self._spooled: list[Path] = []

    def add_bytes(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), self._mtime, 0o644
        self._tar.addfile(info, io.BytesIO(data))

    def add_json(self, name: str, document: object) -> None:
        self.add_bytes(name, json.dumps(document, separators=(",", ":")).encode())

    def add_file(self, name: str, path: Path) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = path.stat().st_size, self._mtime, 0o644
        with path.open("rb") as f:
            self._tar.addfile(info, f)

    def add_stored(self, name: str, key: str) -> None:
        """The object at `key`, streamed from storage into member `name`."""
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = self._storage.size(key), self._mtime, 0o644
        with self._storage.open(key) as f:
            self._tar.addfile(info, f)

    def add_image(self, folder: str, item: source.ExportImage) -> None:
        """The image's stored bytes as ``<folder><name>``, when the export includes images."""
        if self.include_images:
            self.add_stored(folder + item.name, item.image.storage_key)

    def spool(self) -> Path:
        """A local temporary file for a member written image by image; deleted when the export ends."""
        fd, name = tempfile.mkstemp(prefix="export-spool-")
        os.close(fd)
        self._spooled.append(Path(name))
        return Path(name)

    def close(self) -> None:
        for path in self._spooled:
            path.unlink(missing_ok=True)


def export_chunks(
    db: Session,
    storage: Storage,
    project_id: int,
    fmt: str,
    include_images: bool,
    progress: Progress | None = None,
    options: ExportOptions | None = None,
    fidelity: Fidelity | None = None,
) -> Iterator[bytes]:
    """The tar archive of the project in `fmt` (a key of `formats.EXPORTERS`), as consecutive byte chunks.

    `progress(fraction)` is called after each image (0 < fraction <= 1); `fidelity` (when given: the
    caller reads it afterwards) receives the IoU each mask keeps in formats that do not hold masks exactly (polygons, one label
    per pixel), which the archive also holds as its last member, `FIDELITY`.
    """
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORTERS)}")
    total = max(source.count_images(db, project_id), 1)
    sink = _Sink()
    tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)
    archive = Archive(tar, storage, include_images)
    try:
        done = 0
        fidelity = fidelity if fidelity is not None else Fidelity()
        for _ in EXPORTERS[fmt](archive, source.iter_images(db, project_id), options or ExportOptions(), fidelity):
            done += 1
            if progress is not None:
                progress(min(done / total, 1.0))
            yield sink.drain()
        if (summary := fidelity.summary()) is not None:
            archive.add_json(FIDELITY, summary)
        tar.close()
        yield sink.drain()
    finally:
        archive.close()
