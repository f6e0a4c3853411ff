"""Export archives generated incrementally: a tar stream whose bytes leave as each image is added.

`export_chunks` yields the archive piece by piece (the HTTP response streams them; the export job
writes them to a file), so memory holds one image's JSON (and file) at a time, never the whole
archive. Uncompressed tar (``w|``): images are already compressed and a stream needs no seeking.

Layout (see `formats` for the JSON):
- sa1b: ``sa1b/<image id>.json`` per image, then (``include_images``) ``images/<name>`` next to it
  (`formats.member_name`: unique, ASCII, at most 100 bytes, whatever the upload was called);
- coco: ``annotations/instances.json``, then the images. A tar member's size comes before its
  bytes, so the instances file is first written to a temporary file on the storage filesystem,
  image by image, and streamed from there.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from sqlalchemy.orm import Session

from backend.exchange import formats
from backend.storage import LocalStorage

Progress = Callable[[float], None]


class _Sink(io.RawIOBase):
    """A write-only file whose written bytes are taken out with `drain`."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = path.stat().st_size, mtime, 0o644
    with path.open("rb") as f:
        tar.addfile(info, f)


def _json(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def export_chunks(
    db: Session,
    storage: LocalStorage,
    project_id: int,
    fmt: str,
    include_images: bool,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """The tar archive of the project in `fmt` ("sa1b" | "coco"), as consecutive byte chunks.

    `progress(fraction)` is called after each image (0 < fraction <= 1).
    """
    if fmt not in formats.FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(formats.FORMATS)}")
    total = max(formats.count_images(db, project_id), 1) * (2 if fmt == "coco" and include_images else 1)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done / total, 1.0))

    mtime = time.time()
    sink = _Sink()
    tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)
    instances: Path | None = None
    try:
        if fmt == "coco":
            instances = storage.temp_path(".json")
            with instances.open("wb") as out:
                _write_coco(db, project_id, out, step)
            _add_file(tar, "annotations/instances.json", instances, mtime)
            yield sink.drain()
        for item in formats.iter_images(db, project_id):
            if fmt == "sa1b":
                _add_bytes(tar, f"sa1b/{item.image.id}.json", _json(formats.sa1b_document(item)), mtime)
            if include_images:
                _add_file(tar, formats.IMAGES_DIR + item.name, storage.path(item.image.storage_key), mtime)
            if fmt == "sa1b" or include_images:
                step()
            yield sink.drain()
        tar.close()
        yield sink.drain()
    finally:
        if instances is not None:
            instances.unlink(missing_ok=True)


def _write_coco(db: Session, project_id: int, out: IO[bytes], step: Callable[[], None]) -> None:
    """COCO instances JSON, written image by image: images and annotations go to two temporary
    streams first (the JSON lists them apart) and are joined at the end."""
    images = io.BytesIO()
    with _spool() as annotations:
        for item in formats.iter_images(db, project_id):
            images.write((b"," if images.tell() else b"") + _json(formats.coco_image(item)))
            for mask in item.masks:
                annotations.write((b"," if annotations.tell() else b"") + _json(formats.coco_annotation(mask)))
            step()
        out.write(b'{"info":' + _json({"description": f"data engine project {project_id}", "version": "1.0"}))
        out.write(b',"licenses":[],"categories":' + _json([formats.CATEGORY]))
        out.write(b',"images":[' + images.getvalue() + b'],"annotations":[')
        annotations.seek(0)
        while chunk := annotations.read(1 << 20):
            out.write(chunk)
        out.write(b"]}")


def _spool() -> IO[bytes]:
    """A temporary binary file kept in memory up to 64 MiB."""
    return tempfile.SpooledTemporaryFile(max_size=64 << 20)
