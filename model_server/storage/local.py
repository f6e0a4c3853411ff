"""`LocalStorage`: the storage protocol over a folder (the embedded default).

Every write goes to a temporary file under ``<root>/.tmp`` (the same filesystem) and is renamed into
place, so a reader never sees half a file and a crash leaves at most a stray file under ``.tmp/``.
Keys are checked by `keys.check_key`, so none names a file outside the root. There is no URL for the
browser (`url` is None): the API streams the files itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from model_server.storage.keys import RESERVED, check_key, check_prefix

CHUNK = 1024 * 1024


class LocalStorage:
    """Files under `root`, addressed by key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        (self.root / RESERVED).mkdir(parents=True, exist_ok=True)

    def _file(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _existing(self, key: str) -> Path:
        path = self._file(key)
        if not path.is_file():
            raise KeyError(key)
        return path

    def _temp(self) -> Path:
        (self.root / RESERVED).mkdir(parents=True, exist_ok=True)  # a long-lived process outlives a cleanup
        fd, name = tempfile.mkstemp(dir=self.root / RESERVED)
        os.close(fd)
        return Path(name)

    def _commit(self, temp: Path, key: str) -> None:
        """Rename the filled `temp` to `key`, replacing what was there. A concurrent `delete_prefix`
        may remove the empty parent folder between its creation and the rename: then it is made again."""
        target = self._file(key)
        for attempt in range(3):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(temp, target)
                return
            except FileNotFoundError:
                if attempt == 2 or not temp.exists():
                    raise

    def _write(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        self._file(key)  # refuse a bad key before writing anything
        temp = self._temp()
        try:
            with temp.open("wb") as out:
                write(out)
            self._commit(temp, key)
        finally:
            temp.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda out: out.write(data))

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        self._write(key, lambda out: shutil.copyfileobj(stream, out, CHUNK))

    def put_file(self, key: str, path: Path) -> None:
        """Move `path` to `key`: a rename when it is on the root's filesystem, else a copy and a rename."""
        self._file(key)
        try:
            self._commit(Path(path), key)
        except OSError:  # another filesystem
            with Path(path).open("rb") as src:
                self.put_stream(key, src)
            Path(path).unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        return self._existing(key).read_bytes()

    def open(self, key: str) -> BinaryIO:
        try:
            return self._file(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(key) from None

    def download(self, key: str, path: Path) -> None:
        source = self._existing(key)
        path = Path(path)
        partial = path.with_name(path.name + ".part")
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._file(key).is_file()

    def size(self, key: str) -> int:
        return self._existing(key).stat().st_size

    def delete(self, key: str) -> None:
        self._file(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        for key in list(self.list(prefix)):
            self.delete(key)
        self._prune(self._walk_root(prefix))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Sorted as object stores sort (by code point): a directory ``a`` is walked as ``a/``, so
        ``a.txt`` comes before ``a/b`` and ``a0`` after it."""
        check_prefix(prefix)
        start = self._walk_root(prefix)
        base = "" if start == self.root else start.relative_to(self.root).as_posix() + "/"
        return (key for key in self._walk(start, base) if key.startswith(prefix))

    def url(self, key: str, expires_s: int = 3600) -> str | None:
        check_key(key)
        return None

    def _walk_root(self, prefix: str) -> Path:
        """The deepest folder that holds every key starting with `prefix`."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        return self.root.joinpath(*folder.split("/")) if folder else self.root

    def _walk(self, folder: Path, base: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        named = sorted(((e.name + "/" if e.is_dir() else e.name), e) for e in entries)
        for name, entry in named:
            if base == "" and entry.name == RESERVED:
                continue
            if name.endswith("/"):
                yield from self._walk(Path(entry.path), base + name)
            elif entry.is_file():
                yield base + name

    def _prune(self, folder: Path) -> None:
        """Remove the empty folders under `folder` (left by deletes); another writer's new folder may
        race with this, so a folder that is not empty any more is simply kept."""
        if folder == self.root or not folder.is_dir():
            return
        for dirpath, _, _ in sorted(os.walk(folder), key=lambda t: len(t[0]), reverse=True):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
