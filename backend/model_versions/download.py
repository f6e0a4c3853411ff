"""Fetch an official SAM checkpoint from Meta's public URL: resumable, with progress, verified by sha256.

`dataengine models download vit_b` is the one command of the engine that reaches the internet (at
``settings.weights_base_url``). The bytes go to ``<data_dir>/downloads/<file>.part``; an interrupted
run leaves that part in place and the next run asks only for the rest (HTTP ``Range``). Only a file
whose sha256 is the one recorded here gets its final name; anything else is deleted, so a corrupted
or substituted file can never be imported by this command. The import itself is the ordinary one
(`service.import_checkpoint`: strict load as the architecture, sha256 recorded).
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True)
class OfficialCheckpoint:
    """What `models download NAME` fetches (``<base_url>/<file_name>``) and imports as `architecture`."""

    architecture: str
    file_name: str
    sha256: str


# The files the official segment-anything README links to. Meta publishes no digests; these sha256
# are the ones two independent projects pin for those URLs, and they agree: micro-sam
# (computational-cell-analytics/micro-sam, micro_sam/util.py, its pooch registry) and the 3D Slicer
# extension SegmentWithSAM (mazurowski-lab/SlicerSegmentWithSAM, SegmentWithSAM/SegmentWithSAM.py).
# The hex in each file name is the start of the file's MD5 (sam_vit_b_01ec64.pth: 01ec64d29a2f...),
# not of its sha256.
OFFICIAL_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    "vit_b": OfficialCheckpoint(
        "vit_b", "sam_vit_b_01ec64.pth", "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"
    ),
    "vit_l": OfficialCheckpoint(
        "vit_l", "sam_vit_l_0b3195.pth", "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"
    ),
    "vit_h": OfficialCheckpoint(
        "vit_h", "sam_vit_h_4b8939.pth", "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"
    ),
}


class DownloadError(Exception):
    """The server was unreachable, refused, or stopped mid-file (what arrived is kept for the next run)."""


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def download(entry: OfficialCheckpoint, base_url: str, folder: Path, stream: TextIO | None = None) -> Path:
    """The verified checkpoint `entry` in `folder`, fetched (or resumed) from `base_url` if not there yet;
    progress goes to `stream` (default: stderr at call time).

    Raises:
        DownloadError: network failure or an HTTP error answer; a partial file is kept.
        ValueError: the complete file's sha256 is not `entry.sha256` (the file is deleted).
    """
    import httpx  # here, not at module level: `dataengine --help` stays instant

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / entry.file_name
    if target.is_file() and file_sha256(target) == entry.sha256:
        return target
    part = folder / f"{entry.file_name}.part"
    url = f"{base_url.rstrip('/')}/{entry.file_name}"
    try:
        _fetch(url, part, stream or sys.stderr)
    except httpx.HTTPError as exc:
        kept = part.stat().st_size if part.exists() else 0
        resume = f"; {kept} bytes kept in {part}, run the command again to resume" if kept else ""
        raise DownloadError(f"cannot download {url}: {exc or type(exc).__name__}{resume}") from None
    digest = file_sha256(part)
    if digest != entry.sha256:
        part.unlink()
        raise ValueError(f"{url} has sha256 {digest}, not the official {entry.sha256}: refused and deleted")
    part.replace(target)
    return target


def _fetch(url: str, part: Path, stream: TextIO) -> None:
    """Append the bytes of `url` that `part` lacks (all of them when the server ignores Range)."""
    import httpx

    offset = part.stat().st_size if part.exists() else 0
    # identity: a Range counts bytes of the file itself, never of a compressed rendering of it
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
    timeout = httpx.Timeout(60.0, connect=15.0)
    with httpx.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
        if response.status_code == 416:  # nothing after `offset`: the part is already the whole file
            return
        if response.status_code not in (200, 206):
            raise DownloadError(f"cannot download {url}: the server answered HTTP {response.status_code}")
        if response.status_code == 200:
            offset = 0
        length = response.headers.get("Content-Length")
        progress = Progress(part.name.removesuffix(".part"), offset + int(length) if length else None, offset, stream)
        with open(part, "ab" if offset else "wb") as f:
            for chunk in response.iter_bytes():  # as they arrive: a cut loses nothing already received
                f.write(chunk)
                progress.advance(len(chunk))
        progress.finish()


class Progress:
    """A bar redrawn in place on a terminal; elsewhere (logs, pipes) a plain line every tenth of the file
    (every 64 MiB when the size is unknown), so a log shows progress without carriage-return noise."""

    def __init__(self, name: str, total: int | None, done: int, stream: TextIO) -> None:
        self.name, self.total, self.done, self.stream = name, total, done, stream
        self.tty = stream.isatty()
        self.started, self.start_bytes = time.monotonic(), done
        self.step = max(total // 10, 1) if total else 64 << 20
        self.next_line = (done // self.step + 1) * self.step
        self.last_draw = 0.0
        if done:
            print(f"{name}: resuming at {done / 1e6:.1f} MB", file=stream, flush=True)

    def advance(self, n: int) -> None:
        self.done += n
        if self.tty:
            if time.monotonic() - self.last_draw >= 0.1:
                self._draw()
        elif self.done >= self.next_line:
            self.next_line = (self.done // self.step + 1) * self.step
            print(self._status(), file=self.stream, flush=True)

    def finish(self) -> None:
        if self.tty:
            self._draw()
            print(file=self.stream, flush=True)
        else:
            print(f"{self.name}: {self.done / 1e6:.1f} MB received", file=self.stream, flush=True)

    def _draw(self) -> None:
        self.last_draw = time.monotonic()
        bar = ""
        if self.total:
            filled = 30 * self.done // self.total
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] "
        print(f"\r{bar}{self._status()}", end="", file=self.stream, flush=True)

    def _status(self) -> str:
        rate = (self.done - self.start_bytes) / max(time.monotonic() - self.started, 1e-6) / 1e6
        size = (
            f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB ({100 * self.done // self.total}%)"
            if self.total
            else f"{self.done / 1e6:.1f} MB"
        )
        return f"{self.name}: {size} {rate:.1f} MB/s"
