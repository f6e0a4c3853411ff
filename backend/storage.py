"""The one place the backend builds its storage: `storage_for(settings)`.

Images, thumbnails, embeddings, model artifacts and exports live behind `model_server.api.Storage`
(keys, no file paths), opened from `Settings.storage_url`: the local folder `settings.storage_path`
by default, an S3 bucket in production. One storage per process and URL: its client holds the
connection pool; a forked child (a Celery worker) builds its own instead of sharing the parent's sockets.

Work in progress stays local: `scratch_file` is a file in the data home (an upload being validated,
an export archive being written), handed to `Storage.put_file` when whole. On the data home's
filesystem, so the default local storage takes it by a rename.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from backend.core.config import Settings
from model_server.api import Storage, open_storage

SCRATCH_DIR = "tmp"


def storage_for(settings: Settings) -> Storage:
    """The storage `settings.storage_url` names (default: the folder `settings.storage_path`),
    built once per process."""
    return _open(settings.storage_url or str(settings.storage_path), os.getpid())


@functools.cache
def _open(url: str, pid: int) -> Storage:
    return open_storage(url)


def scratch_file(settings: Settings, suffix: str = "") -> Path:
    """A new empty local file under ``<data home>/tmp``; the caller fills it, then stores or deletes it."""
    folder = settings.data_dir / SCRATCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, suffix=suffix)
    os.close(fd)
    return Path(name)
