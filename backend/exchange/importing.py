"""Import of other tools' annotation files: all of the upload or none of it, with a report per file.

An upload is one annotation file (COCO / Label Studio / LabelMe JSON, CVAT XML) or a zip or tar of
files (a YOLO dataset, LabelMe's JSON per image, PNG instance masks). Its format is named by the
caller or detected (`formats.detect`). The work goes in three steps, and the first problems (up to
`MAX_PROBLEMS`, each naming its file and where in it) refuse the whole upload, nothing stored:

1. read: the archive's members, bounded in count and unpacked size before anything is unpacked;
2. parse (the format's module): each mask the files hold, as a `Found` naming its image, its
   shape (`Rle`, `Polygons` in pixels, fractions or percent, or `Pixels` decoded only once the
   size is checked) and where it is in its file; the file's schema is checked here, strictly;
3. resolve: each `Found` is matched to one image of the project (by file name, or by stem for
   formats that name files after their image), its declared size held against the image's, its
   shape checked against the image (RLE runs, polygons inside the image and bounded, masks of the
   image's size) and made the canonical RLE.

Then the masks are written by the one mask writer (`backend.masks.writer`) as source ``imported``,
provenance ``{"origin": "imported", "format": ..., "file": ..., "label": ...}``, in the project's
current stage, in one transaction. Re-importing the same upload adds nothing: each mask's client id
is derived from the upload's digest and the mask's position in it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.exchange.polygons import checked_polygons_rle
from backend.images.service import clean_file_name
from backend.masks import provenance
from backend.masks.rle import InvalidRle, checked_mask
from backend.masks.writer import NewMask, insert_masks
from backend.tables import Image, Mask, MaskSource, Project, User

MAX_PROBLEMS = 20
MAX_FILES = 20_000
MAX_UNPACKED_BYTES = 2 << 30  # an archive may unpack to this much (the request itself is bounded by settings)
MAX_MASKS = 200_000

_LABEL_STUDIO_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")  # Label Studio's uploads: "<8 hex>-<name>"
_OUR_EXPORT_PREFIX = re.compile(r"^\d+_(.+)$")  # our exports: "<image id>_<name>"


@dataclass(frozen=True)
class Rle:
    rle: Mapping[str, Any]  # COCO RLE, size [h, w], str or list counts


@dataclass(frozen=True)
class Polygons:
    polygons: list[list[float]]
    unit: Literal["px", "fraction", "percent"] = "px"  # of the image's width (x) and height (y)


@dataclass(frozen=True)
class Pixels:
    """A mask held as pixels (PNG, brush RLE): `decode` is called only once the image's size
    (`height` x `width`, which the file declares) has been checked, and returns H x W bool."""

    height: int
    width: int
    decode: Callable[[], np.ndarray]


Shape = Rle | Polygons | Pixels


@dataclass
class Found:
    file: str  # the file of the upload
    where: str  # where in the file, for a report ("annotation 3", "line 4")
    image: str  # the image as the file names it (a name, a path or a URL; a stem when `by_stem`)
    shape: Shape
    label: str | None = None
    by_stem: bool = False
    size: tuple[int, int] | None = None  # (height, width) the file declares for the image
    # NewMask fields the file carries (our COCO export: the source, the generator's scores); a mask
    # is source ``imported`` unless its file names another source.
    columns: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # provenance details (ids in the file)


@dataclass(frozen=True)
class Problem:
    file: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}{' ' + self.where if self.where else ''}: {self.message}"


@dataclass
class Parsed:
    found: list[Found] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> shape kind -> count
    files: dict[str, int] = field(default_factory=dict)  # annotation files read (-> masks, set later)

    def problem(self, file: str, where: str, message: str) -> None:
        self.problems.append(Problem(file, where, message))

    def skip(self, file: str, kind: str) -> None:
        counts = self.skipped.setdefault(file, {})
        counts[kind] = counts.get(kind, 0) + 1


class ImportRefused(ValueError):
    """The upload cannot be imported; `problems` says why, each naming its file."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems

    @classmethod
    def single(cls, file: str, message: str) -> ImportRefused:
        return cls([Problem(file, "", message)])


@dataclass(frozen=True)
class FileReport:
    file: str
    masks: int
    images: int
    skipped: dict[str, int]


@dataclass(frozen=True)
class ImportReport:
    format: str
    imported: int
    already_present: int
    images: int  # project images that received masks
    files: list[FileReport]


def read_upload(body: bytes, name: str = "upload") -> dict[str, bytes]:
    """The files of an upload: the members of a zip, tar or tar.gz (folders, hidden files and
    macOS forks left out), or the body itself as one file `name`. Bounded before unpacking."""
    if body[:4] == b"PK\x03\x04":
        return _read_zip(body)
    if body[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(body)) as unzipped:
                body = unzipped.read(MAX_UNPACKED_BYTES + 1)
        except (OSError, EOFError) as error:
            raise ImportRefused.single(name, f"is not a readable gzip file ({error})") from None
        if len(body) > MAX_UNPACKED_BYTES:
            raise ImportRefused.single(name, f"unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")
    if len(body) >= 262 and body[257:262] == b"ustar":
        return _read_tar(body)
    return {name: body}


def _wanted(member: str) -> bool:
    parts = PurePosixPath(member).parts
    return bool(parts) and not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _check_counts(files: int, unpacked: int) -> None:
    if files > MAX_FILES:
        raise ImportRefused.single("upload", f"holds more than {MAX_FILES} files")
    if unpacked > MAX_UNPACKED_BYTES:
        raise ImportRefused.single("upload", f"unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")


def _read_zip(body: bytes) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir() and _wanted(m.filename)]
            _check_counts(len(members), sum(m.file_size for m in members))
            return {m.filename: archive.read(m) for m in members}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError) as error:
        raise ImportRefused.single("upload", f"is not a readable zip archive ({error})") from None


def _read_tar(body: bytes) -> dict[str, bytes]:
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as archive:
            members = [m for m in archive.getmembers() if m.isfile() and _wanted(m.name)]
            _check_counts(len(members), sum(m.size for m in members))
            files = {}
            for member in members:
                extracted = archive.extractfile(member)
                files[member.name] = extracted.read() if extracted is not None else b""
            return files
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ImportRefused.single("upload", f"is not a readable tar archive ({error})") from None


class ProjectImages:
    """The project's images by cleaned file name and by stem, for matching a file's image names."""

    def __init__(self, db: Session, project: Project) -> None:
        self.by_name: dict[str, list[Image]] = {}
        self.by_stem: dict[str, list[Image]] = {}
        for image in db.scalars(select(Image).where(Image.project_id == project.id)):
            self.by_name.setdefault(image.file_name, []).append(image)
            self.by_stem.setdefault(PurePosixPath(image.file_name).stem, []).append(image)

    def match(self, reference: str, by_stem: bool) -> Image | str:
        """The one image `reference` names, or why there is none. A URL or path counts by its last
        part; Label Studio's upload prefix and our exports' id prefix are tried off when the name
        alone matches nothing."""
        name = clean_file_name(reference.split("?", 1)[0])
        table = self.by_stem if by_stem else self.by_name
        candidates = [name]
        for pattern in (_LABEL_STUDIO_PREFIX, _OUR_EXPORT_PREFIX):
            if m := pattern.match(name):
                candidates.append(m.group(1))
        for candidate in candidates:
            images = table.get(candidate, [])
            if len(images) == 1:
                return images[0]
            if len(images) > 1:
                return f"image {candidate!r} matches several images of this project"
        return f"image {name!r} is not an image of this project (upload the images first)"


def _scale(polygons: Polygons, height: int, width: int) -> list[list[float]]:
    if polygons.unit == "px":
        return polygons.polygons
    factor = 1.0 if polygons.unit == "fraction" else 0.01
    return [[v * factor * (width if i % 2 == 0 else height) for i, v in enumerate(p)] for p in polygons.polygons]


def _rle(shape: Shape, height: int, width: int) -> Any:
    """The shape as something `checked_mask` takes (RLE or pixels); raises InvalidRle/InvalidPolygon."""
    if isinstance(shape, Rle):
        return shape.rle
    if isinstance(shape, Polygons):
        return checked_polygons_rle(_scale(shape, height, width), height, width)
    if (shape.height, shape.width) != (height, width):
        raise InvalidRle(f"the mask is {shape.width}x{shape.height} pixels; the image is {width}x{height}")
    return shape.decode()


def import_upload(
    db: Session,
    project: Project,
    user: User,
    body: bytes,
    files: dict[str, bytes],
    fmt: str,
    parse: Callable[[dict[str, bytes]], Parsed],
) -> ImportReport:
    """Parse, check and store the upload `body`, whose files are `files` (`read_upload`), in format
    `fmt` (committed in one transaction).

    Raises:
        ImportRefused: anything is wrong (naming each file and place); nothing is stored then.
    """
    parsed = parse(files)
    if parsed.problems:
        raise ImportRefused(parsed.problems[:MAX_PROBLEMS])
    if not parsed.found:
        raise ImportRefused.single("upload", f"holds no masks in the {fmt} format")
    if len(parsed.found) > MAX_MASKS:
        raise ImportRefused.single("upload", f"holds more than {MAX_MASKS} masks")
    digest = hashlib.sha256(body).hexdigest()[:20]
    images = ProjectImages(db, project)
    problems: list[Problem] = []
    pending: list[tuple[Image, NewMask, Found]] = []
    for position, found in enumerate(parsed.found):
        if len(problems) >= MAX_PROBLEMS:
            break
        image = images.match(found.image, found.by_stem)
        if isinstance(image, str):
            problems.append(Problem(found.file, found.where, image))
            continue
        if found.size is not None and tuple(found.size) != (image.height, image.width):
            h, w = found.size
            problems.append(
                Problem(
                    found.file,
                    found.where,
                    f"the file's image is {w}x{h}; {image.file_name!r} is {image.width}x{image.height}",
                )
            )
            continue
        try:
            checked = checked_mask(_rle(found.shape, image.height, image.width), image.height, image.width)
        except ValueError as error:  # InvalidRle, InvalidPolygon, an undecodable brush
            problems.append(Problem(found.file, found.where, f"invalid mask for {image.file_name!r}: {error}"))
            continue
        details = {"file": found.file[:500], **found.details}
        if found.label is not None:
            details["label"] = found.label[:200]
        columns = dict(found.columns)
        new = NewMask(
            mask=checked,
            source=columns.pop("source", MaskSource.imported),
            stage=project.stage,
            provenance=provenance.imported(fmt, **details),
            client_id=f"{fmt}-{digest}-{position}"[:64],
            author_id=user.id,
            **columns,
        )
        pending.append((image, new, found))
    if problems:
        raise ImportRefused(problems)

    present = _present(db, project, [new.client_id for _, new, _ in pending if new.client_id])
    by_image: dict[int, tuple[Image, list[NewMask]]] = {}
    per_file: dict[str, list[int]] = {}
    for image, new, found in pending:
        per_file.setdefault(found.file, [])
        if (image.id, new.client_id) in present:
            continue
        by_image.setdefault(image.id, (image, []))[1].append(new)
        per_file[found.file].append(image.id)
    imported = sum(insert_masks(db, image, masks) for image, masks in by_image.values())
    db.commit()
    names = sorted(set(parsed.files) | set(per_file) | set(parsed.skipped))
    return ImportReport(
        format=fmt,
        imported=imported,
        already_present=len(present),
        images=len(by_image),
        files=[
            FileReport(
                file=name,
                masks=len(per_file.get(name, [])),
                images=len(set(per_file.get(name, []))),
                skipped=parsed.skipped.get(name, {}),
            )
            for name in names
        ],
    )


def _present(db: Session, project: Project, client_ids: list[str]) -> set[tuple[int, str | None]]:
    found: set[tuple[int, str | None]] = set()
    for start in range(0, len(client_ids), 500):
        rows = db.execute(
            select(Mask.image_id, Mask.client_id).where(
                Mask.project_id == project.id, Mask.client_id.in_(client_ids[start : start + 500])
            )
        )
        found |= {(image_id, client_id) for image_id, client_id in rows}
    return found
