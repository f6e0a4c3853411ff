"""Storage keys: what a valid key or prefix is, the same for every backend.

A key is a relative POSIX name (``images/ab/abcd.jpg``): no leading slash, no empty, ``.`` or ``..``
part, no backslash or control character, and not under `RESERVED` (the local folder's work-in-progress
files). Both backends refuse the same keys, so a key that works on a laptop works on S3 and can never
name a file outside the local folder.
"""

from __future__ import annotations

RESERVED = ".tmp"
MAX_KEY_BYTES = 1024  # S3's limit (UTF-8)


def check_key(key: str) -> str:
    """`key` itself when valid; `ValueError` naming it otherwise."""
    try:
        encoded = key.encode("utf-8")  # refuses lone surrogates, which no object store can name
    except (AttributeError, UnicodeEncodeError):
        raise ValueError(f"invalid storage key: {key!r}") from None
    parts = key.split("/")
    if (
        not key
        or len(encoded) > MAX_KEY_BYTES
        or any(part in ("", ".", "..") for part in parts)
        or parts[0] == RESERVED
        or "\\" in key
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in key)
    ):
        raise ValueError(f"invalid storage key: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """`prefix` itself when it is "" or a valid key, with or without one trailing slash."""
    if prefix:
        check_key(prefix.removesuffix("/"))
    return prefix
