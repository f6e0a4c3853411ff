"""What an export reads: the project's images with their live masks, and each image's archive name.

Which masks: the project's masks that are not deleted (a rejected or corrected auto mask is deleted;
its correction is exported instead), all sources, in id order.

File names: an upload's name is the client's (cleaned for display, but it may be ``.png``, 255 ``ü``
or a name another image shares), so it never becomes an archive path. An image is exported as
``<image id>_<stem>.<ext>`` (`member_name`): unique by the id, the stem reduced to ASCII letters,
digits and ``-_.`` with no leading dot, the extension that of the stored bytes, the whole path (under
the longest images folder a format uses) at most 100 bytes: a plain ustar name every tar extracts.
Every format names an image's files by that name or its stem; the uploaded name is kept in the
formats that have room for it (``original_file_name`` in COCO and SA-1B).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_util
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.tables import Image, Mask

IMAGES_PER_QUERY = 100
MAX_MEMBER_BYTES = 100  # a ustar name field: no PAX header needed, every tar reads it
IMAGES_DIR_BYTES = len("SegmentationObject/")  # the longest folder an image's name goes under


@dataclass(frozen=True)
class ExportImage:
    image: Image
    name: str  # file name in the archive and in the annotations: `member_name`
    masks: list[Mask]

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem


def count_images(db: Session, project_id: int) -> int:
    return db.scalar(select(func.count()).select_from(Image).where(Image.project_id == project_id)) or 0


def member_name(image: Image) -> str:
    """The image's file name in the archive: see the module docstring."""
    ext = PurePosixPath(image.storage_key).suffix
    prefix = f"{image.id}_"
    ascii_stem = unicodedata.normalize("NFKD", PurePosixPath(image.file_name).stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_stem).lstrip("._")
    budget = MAX_MEMBER_BYTES - IMAGES_DIR_BYTES - len(prefix) - max(len(ext), len(".json"))
    return f"{prefix}{stem[:budget].rstrip('.') or 'image'}{ext}"


def iter_images(db: Session, project_id: int) -> Iterator[ExportImage]:
    """The project's images with their live masks, `IMAGES_PER_QUERY` at a time (keyset pages)."""
    last_id = 0
    while True:
        images = db.scalars(
            select(Image)
            .where(Image.project_id == project_id, Image.id > last_id)
            .order_by(Image.id)
            .limit(IMAGES_PER_QUERY)
        ).all()
        if not images:
            return
        masks: dict[int, list[Mask]] = {image.id: [] for image in images}
        for mask in db.scalars(
            select(Mask).where(Mask.image_id.in_(list(masks)), Mask.deleted_at.is_(None)).order_by(Mask.id)
        ):
            masks[mask.image_id].append(mask)
        for image in images:
            yield ExportImage(image, member_name(image), masks[image.id])
        last_id = images[-1].id


def image_info(item: ExportImage) -> dict[str, Any]:
    return {
        "image_id": item.image.id,
        "file_name": item.name,
        "original_file_name": item.image.file_name,
        "width": item.image.width,
        "height": item.image.height,
    }


def coco_rle(mask: Mask) -> dict[str, Any]:
    """The stored RLE for pycocotools (bytes counts)."""
    return {"size": list(mask.rle["size"]), "counts": mask.rle["counts"].encode("ascii")}


def pixels(mask: Mask) -> np.ndarray:
    """The mask as an HxW bool array."""
    return mask_util.decode(coco_rle(mask)).astype(bool)
