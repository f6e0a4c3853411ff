"""PNG instance masks: one 16-bit grayscale PNG per image whose pixel values are instance ids.

Export: ``masks/<stem>.png`` (0 background, 1..n the image's masks in id order) and ``instances.json``
(``{"<stem>.png": {"image": <file name>, "original_file_name": ..., "instances": {"1": mask id,
...}}}``), images under ``images/`` (``include_images``). One label per pixel cannot hold overlapping
masks: larger masks are painted first, so a part inside a whole stays visible and the whole loses
it; the IoU each mask keeps (its visible pixels over its own) is reported per mask.

Import: every PNG of the upload named after an image's stem (under any folder but ``images/``), 8- or
16-bit grayscale or palette; each value but 0 is one mask. The PNG's size must be the image's (and
at most `MAX_PIXELS`, checked from its header before decoding). Other tools' "instance" PNGs (palette PNGs of VOC's
``SegmentationObject``, X-AnyLabeling's masks) read the same way; VOC's 255 (object borders) is void.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image as PILImage

from backend.exchange.formats.common import ExportOptions, Fidelity
from backend.exchange.importing import Found, Parsed, Pixels
from backend.exchange.source import ExportImage, pixels

if TYPE_CHECKING:
    from backend.exchange.archive import Archive

IMAGES_DIR = "images/"
MAX_INSTANCES = 65535
VOID = 255  # VOC's border/"difficult" value in 8-bit object PNGs
MAX_IMPORT_INSTANCES = 1000
MAX_PIXELS = 50_000_000  # as the uploads' default decompression-bomb bound: checked before decoding


def paint(item: ExportImage, limit: int, fidelity: Fidelity) -> tuple[np.ndarray, dict[int, int]]:
    """The image's label array (instance index per pixel; uint16) and index -> mask id, larger masks
    painted first; records the IoU each mask keeps. Masks past `limit` are left out (IoU 0)."""
    labels = np.zeros((item.image.height, item.image.width), dtype=np.uint16)
    arrays = {mask.id: pixels(mask) for mask in item.masks}
    index_of = {mask.id: index for index, mask in enumerate(item.masks[:limit], start=1)}
    for mask_id in sorted(index_of, key=lambda m: -int(arrays[m].sum())):
        labels[arrays[mask_id]] = index_of[mask_id]
    for mask_id, own in arrays.items():
        kept = int(np.count_nonzero(labels[own] == index_of[mask_id])) if mask_id in index_of else 0
        fidelity.record("IoU of the pixels labelled with the mask", mask_id, kept / max(int(own.sum()), 1))
    return labels, {index: mask_id for mask_id, index in index_of.items()}


def png_bytes(image: PILImage.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def export(
    archive: Archive, images: Iterable[ExportImage], options: ExportOptions, fidelity: Fidelity
) -> Iterator[None]:
    index: dict[str, object] = {}
    for item in images:
        labels, ids = paint(item, MAX_INSTANCES, fidelity)
        archive.add_bytes(f"masks/{item.stem}.png", png_bytes(PILImage.fromarray(labels)))
        index[f"{item.stem}.png"] = {
            "image": item.name,
            "original_file_name": item.image.file_name,
            "instances": {str(k): v for k, v in ids.items()},
        }
        archive.add_image(IMAGES_DIR, item)
        yield
    archive.add_bytes("instances.json", json.dumps(index, separators=(",", ":")).encode())


def mask_files(files: Mapping[str, bytes]) -> list[str]:
    return [name for name in files if name.lower().endswith(".png") and "images" not in PurePosixPath(name).parts[:-1]]


def _labels(data: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as image:
        return np.asarray(image)


class _Decoded:
    """The label array of one PNG at a time: instances are resolved file by file, so each PNG is
    decoded once for its listing and once for its masks, and an upload of many large PNGs never
    holds more than one decoded."""

    def __init__(self) -> None:
        self._data: bytes | None = None
        self._labels: np.ndarray | None = None

    def instance(self, data: bytes, value: int) -> Callable[[], np.ndarray]:
        def decode() -> np.ndarray:
            if self._data is not data or self._labels is None:
                self._data, self._labels = data, _labels(data)
            return self._labels == value

        return decode


def parse(files: Mapping[str, bytes]) -> Parsed:
    parsed = Parsed()
    decoded = _Decoded()
    for file in mask_files(files):
        data = files[file]
        try:
            with PILImage.open(io.BytesIO(data)) as image:
                image_format, mode, (width, height) = image.format, image.mode, image.size
                if image_format != "PNG" or mode not in ("L", "P", "I;16", "I;16B", "I"):
                    parsed.problem(file, "", f"must be a grayscale or palette PNG of instance ids (is {mode})")
                    continue
                if width * height > MAX_PIXELS:
                    parsed.problem(file, "", f"is {width}x{height}: more than {MAX_PIXELS} pixels")
                    continue
                labels = np.asarray(image)
        except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as error:
            parsed.problem(file, "", f"is not a readable PNG ({error})")
            continue
        values = [int(v) for v in np.unique(labels) if v != 0 and not (labels.dtype == np.uint8 and v == VOID)]
        del labels
        if len(values) > MAX_IMPORT_INSTANCES:
            parsed.problem(file, "", f"holds more than {MAX_IMPORT_INSTANCES} instances")
            continue
        parsed.files[file] = 0
        for value in values:
            parsed.found.append(
                Found(
                    file=file,
                    where=f"instance {value}",
                    image=PurePosixPath(file).stem,
                    by_stem=True,
                    shape=Pixels(height, width, decoded.instance(data, value)),
                    details={"instance": value},
                )
            )
    return parsed
