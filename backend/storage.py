"""One small interface over the storage root (images, thumbnails, embeddings, model artifacts, exports).

Keys are relative POSIX paths such as `images/ab/abcd....jpg`. Every write goes to a temporary file in
the same filesystem and is renamed into place, so a reader never sees half a file and a crash leaves
at most a stray file under `.tmp/`. An object store can replace `LocalStorage` behind the same methods.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

TMP_DIR = ".tmp"


class LocalStorage:
    """Files under `root`, addressed by key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        (self.root / TMP_DIR).mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The local file for `key`; refuses keys that would escape the root."""
        pure = PurePosixPath(key)
        if not key or pure.is_absolute() or any(part in ("..", "") for part in pure.parts) or pure.parts[0] == TMP_DIR:
            raise ValueError(f"invalid storage key: {key!r}")
        return self.root.joinpath(*pure.parts)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def temp_path(self, suffix: str = "") -> Path:
        """A new empty file on the storage filesystem, to be filled and then `put_file`d (or deleted)."""
        fd, name = tempfile.mkstemp(dir=self.root / TMP_DIR, suffix=suffix)
        os.close(fd)
        return Path(name)

    def put_file(self, key: str, src: Path) -> None:
        """Move `src` (ideally from `temp_path`) to `key` atomically, replacing any existing file."""
        dst = self.path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dst)
        except OSError:  # another filesystem: copy next to the target, then rename
            tmp = dst.with_name(dst.name + ".part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
            Path(src).unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def open(self, key: str) -> BinaryIO:
        """Open for binary reading; the caller closes it."""
        return self.path(key).open("rb")

    def delete(self, key: str) -> None:
        """Remove `key` if present."""
        self.path(key).unlink(missing_ok=True)
