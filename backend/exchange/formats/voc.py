"""Pascal VOC segmentation export: ``SegmentationObject`` / ``SegmentationClass`` PNGs and XML.

As the VOC2012 devkit lays a dataset out: ``JPEGImages/<name>`` (``include_images``),
``Annotations/<stem>.xml`` (size, ``segmented`` 1, one ``<object>`` per mask in instance order with
its ``bndbox`` in VOC's 1-based inclusive pixels), ``SegmentationObject/<stem>.png`` (palette PNG,
pixel value = the object's index in the XML, 0 background), ``SegmentationClass/<stem>.png``
(palette PNG, 1 = class ``object``), ``ImageSets/Segmentation/default.txt`` (the stems) and
``labelmap.txt`` (classes and colours, as CVAT and Datumaro write it). The palette is VOC's own
colour map, so the PNGs look like VOC's. An 8-bit PNG holds at most 254 objects (255 is VOC's void);
overlaps are resolved as in `png_masks` (larger first); the IoU each mask keeps is reported per mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING
from xml.etree import ElementTree

import numpy as np
from PIL import Image as PILImage

from backend.exchange.formats.common import CATEGORY, ExportOptions, Fidelity
from backend.exchange.formats.png_masks import paint, png_bytes
from backend.exchange.source import ExportImage

if TYPE_CHECKING:
    from backend.exchange.archive import Archive

MAX_OBJECTS = 254


def palette() -> list[int]:
    """VOC's colour map (the devkit's ``labelcolormap``): colour i from the bits of i, spread."""
    colours = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours += [r, g, b]
    return colours


PALETTE = palette()


def _palette_png(labels: np.ndarray) -> bytes:
    image = PILImage.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(PALETTE)
    return png_bytes(image)


def _sub(parent: ElementTree.Element, tag: str, text: object = None) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, tag)
    if text is not None:
        element.text = str(text)
    return element


def annotation_xml(item: ExportImage, ids: dict[int, int]) -> bytes:
    root = ElementTree.Element("annotation")
    _sub(root, "folder", "VOC")
    _sub(root, "filename", item.name)
    size = _sub(root, "size")
    _sub(size, "width", item.image.width)
    _sub(size, "height", item.image.height)
    _sub(size, "depth", 3)
    _sub(root, "segmented", 1)
    masks = {m.id: m for m in item.masks}
    for index in sorted(ids):
        x, y, w, h = (float(v) for v in masks[ids[index]].bbox)
        obj = _sub(root, "object")
        _sub(obj, "name", CATEGORY["name"])
        _sub(obj, "pose", "Unspecified")
        _sub(obj, "truncated", 0)
        _sub(obj, "difficult", 0)
        box = _sub(obj, "bndbox")
        for tag, value in (("xmin", x + 1), ("ymin", y + 1), ("xmax", x + w), ("ymax", y + h)):
            _sub(box, tag, int(round(value)))
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def export(
    archive: Archive, images: Iterable[ExportImage], options: ExportOptions, fidelity: Fidelity
) -> Iterator[None]:
    stems = []
    for item in images:
        labels, ids = paint(item, MAX_OBJECTS, fidelity)
        archive.add_bytes(f"Annotations/{item.stem}.xml", annotation_xml(item, ids))
        archive.add_bytes(f"SegmentationObject/{item.stem}.png", _palette_png(labels))
        archive.add_bytes(f"SegmentationClass/{item.stem}.png", _palette_png(labels > 0))
        archive.add_image("JPEGImages/", item)
        stems.append(item.stem)
        yield
    archive.add_bytes("ImageSets/Segmentation/default.txt", "".join(s + "\n" for s in stems).encode())
    background, colour = "0,0,0", ",".join(str(v) for v in PALETTE[3:6])
    archive.add_bytes(
        "labelmap.txt",
        f"# label:color_rgb:parts:actions\nbackground:{background}::\n{CATEGORY['name']}:{colour}::\n".encode(),
    )
