"""`S3Storage`: the storage protocol over an S3-protocol bucket (AWS S3, MinIO, moto in tests).

Through boto3, the reference S3 client: its transfer manager streams large objects as multipart
uploads and ranged downloads in fixed-size parts (`TRANSFER`: memory holds a few parts, never the
object), it presigns GET URLs for the browser, and it reads credentials the standard way (the
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` variables, ``~/.aws``, instance roles). boto3 is
imported when an `S3Storage` is built, so the local mode never loads it.

Objects live under ``<prefix>/<key>`` in the bucket. S3 writes are atomic per object (a reader sees
the old or the new one), so no temporary objects are needed. S3 lists keys in UTF-8 byte order, which
is the code-point order `LocalStorage` sorts by.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from model_server.storage.keys import check_key, check_prefix

MIB = 1024 * 1024
PART_BYTES = 8 * MIB
MISSING = {"404", "NoSuchKey", "NotFound"}
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    # Parts of 8 MiB, two in flight and two buffered for a non-seekable stream: ~32 MiB at most.
    config = TransferConfig(
        multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=2, max_io_queue=2
    )
    # s3transfer's own bounds (10 parts each by default), which boto3's constructor does not take.
    config.max_in_memory_upload_chunks = 2
    config.max_in_memory_download_chunks = 2
    return config


class _FullReads:
    """A stream whose ``read(n)`` returns n bytes unless at EOF. The transfer manager takes a short
    read for the end of the stream: a socket or a raw file would otherwise be sent as one PutObject
    read whole into memory (or as parts under S3's 5 MiB minimum)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def read(self, amount: int = -1) -> bytes:
        if amount is None or amount < 0:
            return self._stream.read()
        pieces, left = [], amount
        while left > 0 and (piece := self._stream.read(left)):
            pieces.append(piece)
            left -= len(piece)
        return b"".join(pieces)


class S3Storage:
    """Objects in `bucket` under `prefix`; `endpoint_url` for a non-AWS server (MinIO); `presign`
    False when the browser cannot reach the server (then `url` is None and the API streams)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        presign: bool = True,
    ) -> None:
        import boto3
        from botocore.config import Config

        if not bucket:
            raise ValueError("an S3 storage needs a bucket")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.presign = presign
        # The default session caches the loaded service model, so building a client is cheap; a
        # client is thread-safe and holds the connection pool, so one storage serves a process.
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"mode": "standard"}),
        )
        self._transfer = _transfer_config()

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _extra(self, key: str) -> dict[str, str]:
        """The Content-Type a browser that follows a presigned URL needs."""
        content_type = mimetypes.guess_type(key)[0]
        return {"ContentType": content_type} if content_type else {}

    def _missing(self, error: Exception) -> bool:
        from botocore.exceptions import ClientError

        return isinstance(error, ClientError) and str(error.response.get("Error", {}).get("Code")) in MISSING

    def put_bytes(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data, **self._extra(key))

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        self._client.upload_fileobj(
            _FullReads(stream), self.bucket, self._name(key), ExtraArgs=self._extra(key) or None, Config=self._transfer
        )

    def put_file(self, key: str, path: Path) -> None:
        self._client.upload_file(
            str(path), self.bucket, self._name(key), ExtraArgs=self._extra(key) or None, Config=self._transfer
        )
        Path(path).unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        with self.open(key) as body:
            return body.read()

    def open(self, key: str) -> BinaryIO:
        name = self._name(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=name)
        except Exception as error:
            if self._missing(error):
                raise KeyError(key) from None
            raise
        return cast(BinaryIO, response["Body"])

    def download(self, key: str, path: Path) -> None:
        """Ranged parts into a temporary file next to `path`, renamed into place by boto3."""
        name = self._name(key)
        try:
            self._client.download_file(self.bucket, name, str(path), Config=self._transfer)
        except Exception as error:
            if self._missing(error):
                raise KeyError(key) from None
            raise

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self._client.head_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as error:
            if self._missing(error):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise KeyError(key)
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def delete_prefix(self, prefix: str) -> None:
        batch: list[dict[str, str]] = []
        for key in self.list(prefix):
            batch.append({"Key": self.prefix + key})
            if len(batch) == DELETE_BATCH:
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                batch = []
        if batch:
            self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def list(self, prefix: str = "") -> Iterator[str]:
        full = self.prefix + check_prefix(prefix)
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
        return (obj["Key"][len(self.prefix) :] for page in pages for obj in page.get("Contents", []))

    def url(self, key: str, expires_s: int = 3600) -> str | None:
        name = self._name(key)
        if not self.presign:
            return None
        return str(
            self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": name}, ExpiresIn=expires_s
            )
        )
