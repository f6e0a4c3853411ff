"""One suite, two storage backends: the local folder and S3 (moto's real server on 127.0.0.1).

Each test runs against both `LocalStorage` and `S3Storage` (a new bucket per test, objects under a
key prefix), so the behaviour the rest of the product relies on is the same in the embedded mode
and in production: missing keys, overwrite, listing order, deletes, sizes, downloads, URLs, refused
keys, and a 200 MB object streamed in and out with memory far below its size.
"""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from pathlib import Path

import httpx
import pytest

from model_server.api import Storage, open_storage
from model_server.storage import LocalStorage, S3Storage
from tests.s3_server import S3Server

MIB = 1024 * 1024
BIG_MIB = 200


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return open_storage(str(tmp_path / "store"))
    server: S3Server = request.getfixturevalue("s3_server")
    return open_storage(server.storage_url(server.create_bucket(), "engine/data"))


class Generated(io.RawIOBase):
    """`mib` MiB made on the fly (each MiB its index and a fixed random block), hashed as read."""

    def __init__(self, mib: int) -> None:
        super().__init__()
        self._block = os.urandom(MIB - 8)
        self._left, self._index, self._pending = mib, 0, b""
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        if not self._pending and self._left:
            self._pending = self._index.to_bytes(8, "little") + self._block
            self._index, self._left = self._index + 1, self._left - 1
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self.sha256.update(self._pending[:n])
        self._pending = self._pending[n:]
        return n


def _hash_stream(stream: io.RawIOBase | io.BufferedIOBase) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(MIB):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _hash_file(path: Path) -> str:
    with path.open("rb") as f:
        return _hash_stream(f)[0]


def _peak_mib(work) -> float:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


def test_a_200_mb_object_streams_in_and_out_without_being_held_in_memory(storage: Storage, tmp_path: Path) -> None:
    source = Generated(BIG_MIB)
    put_peak = _peak_mib(lambda: storage.put_stream("big/object.bin", source))
    assert storage.size("big/object.bin") == BIG_MIB * MIB

    read: dict[str, tuple[str, int]] = {}

    def read_back() -> None:
        with storage.open("big/object.bin") as stream:
            read["sha"] = _hash_stream(stream)

    read_peak = _peak_mib(read_back)
    assert read["sha"] == (source.sha256.hexdigest(), BIG_MIB * MIB)

    target = tmp_path / "downloaded.bin"
    download_peak = _peak_mib(lambda: storage.download("big/object.bin", target))
    assert _hash_file(target) == source.sha256.hexdigest()
    # Parts of 8 MiB, a few at a time: far below the object's 200 MiB (measured: see the report).
    for peak in (put_peak, read_peak, download_peak):
        assert peak < 48, (put_peak, read_peak, download_peak)


def test_missing_keys_raise_key_error_and_exists_says_false(storage: Storage, tmp_path: Path) -> None:
    for read in (storage.get, storage.open, storage.size, lambda k: storage.download(k, tmp_path / "x")):
        with pytest.raises(KeyError, match="no/such.jpg"):
            read("no/such.jpg")
    assert not storage.exists("no/such.jpg")
    assert not (tmp_path / "x").exists()
    storage.delete("no/such.jpg")  # no error
    storage.delete_prefix("no/")


def test_overwrite_replaces_the_whole_object(storage: Storage) -> None:
    storage.put_bytes("thumbnails/a.jpg", b"first version, longer")
    storage.put_stream("thumbnails/a.jpg", io.BytesIO(b"second"))
    assert storage.get("thumbnails/a.jpg") == b"second"
    assert storage.size("thumbnails/a.jpg") == 6
    assert list(storage.list()) == ["thumbnails/a.jpg"]


def test_put_file_stores_the_file_and_removes_it(storage: Storage, tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pth"
    path.write_bytes(b"weights" * 1000)
    storage.put_file("models/1/checkpoint.pth", path)
    assert not path.exists()
    assert storage.get("models/1/checkpoint.pth") == b"weights" * 1000
    storage.download("models/1/checkpoint.pth", tmp_path / "copy.pth")
    assert (tmp_path / "copy.pth").read_bytes() == b"weights" * 1000


KEYS = ["a.txt", "a/b", "a/c/d", "a0", "b/x", "images/ab/1.jpg", "images/ab/2.jpg", "images/ac/3.jpg"]


def test_list_is_sorted_by_code_point_and_filtered_by_string_prefix(storage: Storage) -> None:
    for key in reversed(KEYS):
        storage.put_bytes(key, key.encode())
    assert list(storage.list()) == KEYS
    assert list(storage.list("a")) == ["a.txt", "a/b", "a/c/d", "a0"]
    assert list(storage.list("a/")) == ["a/b", "a/c/d"]
    assert list(storage.list("images/a")) == ["images/ab/1.jpg", "images/ab/2.jpg", "images/ac/3.jpg"]
    assert list(storage.list("images/ab/")) == ["images/ab/1.jpg", "images/ab/2.jpg"]
    assert list(storage.list("nothing/")) == []


def test_delete_and_delete_prefix_remove_only_what_they_name(storage: Storage) -> None:
    for key in KEYS:
        storage.put_bytes(key, b"x")
    storage.delete("b/x")
    storage.delete_prefix("a/")
    assert list(storage.list()) == ["a.txt", "a0", "images/ab/1.jpg", "images/ab/2.jpg", "images/ac/3.jpg"]
    storage.delete_prefix("images/")
    assert list(storage.list()) == ["a.txt", "a0"]
    storage.put_bytes("a/b", b"again")  # a prefix emptied by delete_prefix takes new objects
    assert storage.get("a/b") == b"again"


def test_url_is_none_for_the_folder_and_a_presigned_get_for_s3(storage: Storage) -> None:
    storage.put_bytes("images/ab/abc.jpg", b"\xff\xd8jpeg bytes")
    url = storage.url("images/ab/abc.jpg", expires_s=60)
    if isinstance(storage, LocalStorage):
        assert url is None
        return
    assert url is not None
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"\xff\xd8jpeg bytes"
    assert response.headers["content-type"] == "image/jpeg"


BAD_KEYS = ["", "/etc/passwd", "../escape", "a/../../b", "a//b", "./a", "a/", ".tmp/x", "a\\b", "a\x00b", "\udcff"]


def test_invalid_keys_are_refused_before_anything_is_written(storage: Storage, tmp_path: Path) -> None:
    calls = (
        lambda key: storage.put_bytes(key, b"x"),
        lambda key: storage.put_stream(key, io.BytesIO(b"x")),
        storage.get,
        storage.exists,
        storage.delete,
        storage.url,
    )
    for key in BAD_KEYS:
        for call in calls:
            with pytest.raises(ValueError, match="invalid storage key"):
                call(key)
        if key not in ("", "a/"):  # "" and "a/" are valid prefixes
            with pytest.raises(ValueError, match="invalid storage key"):
                list(storage.list(key))
    assert list(storage.list()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == (["store"] if isinstance(storage, LocalStorage) else [])


def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("a/b", b"1")
    storage.put_stream("a/c", io.BytesIO(b"2"))
    with pytest.raises(OSError):
        storage.put_stream("a/d", _Failing())
    assert not storage.exists("a/d")
    assert list((tmp_path / ".tmp").iterdir()) == []
    assert list(storage.list()) == ["a/b", "a/c"]


class _Failing(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        raise OSError("the client went away")


def test_s3_prefixes_of_one_bucket_do_not_see_each_other(s3_server: S3Server) -> None:
    bucket = s3_server.create_bucket()
    one, two = (open_storage(s3_server.storage_url(bucket, prefix)) for prefix in ("one", "two"))
    one.put_bytes("k", b"1")
    two.put_bytes("k", b"2")
    assert (one.get("k"), two.get("k")) == (b"1", b"2")
    one.delete_prefix("")
    assert list(one.list()) == [] and list(two.list()) == ["k"]


def test_open_storage_reads_paths_file_urls_and_s3_urls(tmp_path: Path, s3_server: S3Server) -> None:
    assert isinstance(open_storage(str(tmp_path / "a")), LocalStorage)
    local = open_storage(f"file://{tmp_path / 'b'}")
    assert isinstance(local, LocalStorage) and local.root == tmp_path / "b"
    s3 = open_storage(s3_server.storage_url("bucket", "some/prefix") + "&presign=false")
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix, s3.presign) == ("bucket", "some/prefix/", False)
    for bad, why in [
        ("", "empty"),
        ("ftp://host/x", "unknown scheme"),
        ("file://relative/path", "absolute path"),
        ("s3:///prefix", "no bucket"),
        ("s3://bucket?endpoint=x", "unknown option"),
        ("s3://bucket?presign=maybe", "presign"),
    ]:
        with pytest.raises(ValueError, match=why):
            open_storage(bad)
