"""Turn an untrusted upload into a stored-ready RGB image file, or refuse it with a clear reason.

What is checked, in order, before anything is decoded in full:
1. size in bytes: empty -> 400, over `max_bytes` -> 413;
2. the header: not a supported image format -> 415 (a text file named .jpg lands here);
3. width x height over `max_pixels` -> 413 (decompression-bomb guard, from the header alone, so a
   30000x30000 PNG of a few KB is refused without allocating its pixels); a longer side more than
   `MAX_ASPECT_RATIO` times the shorter -> 400 (a 1x40000 strip cannot be annotated);
then the full decode (truncated or corrupt data -> 400), EXIF orientation, conversion to RGB.

What is stored: the original bytes when they already are what we want (an RGB JPEG or PNG with no EXIF
rotation), so nothing is recompressed; otherwise the normalised RGB image, re-encoded as JPEG (quality
95) when the source was JPEG and as PNG (lossless) for everything else. `sha256` is of the stored bytes.
"""

from __future__ import annotations

import hashlib
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Multi-picture JPEGs from phones open through the JPEG plugin (format "MPO"); the first frame is used.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
KEEP_AS_IS = {"JPEG": "jpg", "PNG": "png"}
EXIF_ORIENTATION = 0x0112
# SAM sees the image with its longer side resized to 1024 px; at 64:1 the shorter one is 16 px, one
# patch of the encoder. Narrower strips would be encoded as less than a row of patches.
MAX_ASPECT_RATIO = 64
_CHUNK = 1024 * 1024


class ImageRejected(ValueError):
    """An upload that cannot be stored; `status_code` is the HTTP status that fits the reason."""

    def __init__(self, file_name: str, reason: str, status_code: int) -> None:
        super().__init__(f"{file_name}: {reason}")
        self.file_name = file_name
        self.reason = reason
        self.status_code = status_code


@dataclass(frozen=True)
class PreparedImage:
    """A validated image written to `temp_path` (a local scratch file), not yet stored or in the database."""

    file_name: str
    temp_path: Path
    sha256: str
    ext: str  # "jpg" | "png"
    width: int  # after EXIF orientation
    height: int
    size_bytes: int  # of the stored file


def _byte_size(src: BinaryIO) -> int:
    src.seek(0, 2)
    size = src.tell()
    src.seek(0)
    return size


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency is composited on white, 16-bit/float scaled to 0..255."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        gray = (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        scaled = np.zeros_like(values) if hi <= lo else (values - lo) * (255.0 / (hi - lo))
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _copy_hashing(src: BinaryIO, dst: Path) -> str:
    digest = hashlib.sha256()
    src.seek(0)
    with dst.open("wb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def prepare_image(src: BinaryIO, file_name: str, temp_path: Path, *, max_bytes: int, max_pixels: int) -> PreparedImage:
    """Validate `src` (seekable binary file) and write the bytes to store into `temp_path`.

    Raises `ImageRejected`; on rejection `temp_path` is left empty for the caller to delete.
    """
    size = _byte_size(src)
    if size == 0:
        raise ImageRejected(file_name, "the file is empty", 400)
    if size > max_bytes:
        raise ImageRejected(file_name, f"file of {size} bytes exceeds the limit of {max_bytes} bytes", 413)

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(src, formats=ALLOWED_FORMATS)
        except UnidentifiedImageError as exc:
            raise ImageRejected(
                file_name, f"not a supported image (allowed: {', '.join(ALLOWED_FORMATS)})", 415
            ) from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(file_name, f"image too large: {exc}", 413) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageRejected(file_name, f"corrupt image header: {exc}", 400) from exc

        with image:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageRejected(file_name, "image has no pixels", 400)
            if width * height > max_pixels:
                raise ImageRejected(
                    file_name,
                    f"image too large: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}",
                    413,
                )
            if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
                raise ImageRejected(
                    file_name,
                    f"image of {width}x{height} pixels cannot be annotated: its longer side may be at "
                    f"most {MAX_ASPECT_RATIO} times its shorter one",
                    400,
                )
            source_format = image.format or ""
            try:
                image.load()
                orientation = image.getexif().get(EXIF_ORIENTATION, 1)
                oriented = ImageOps.exif_transpose(image) if orientation != 1 else image
                rgb = _to_rgb(oriented)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise ImageRejected(file_name, f"image too large: {exc}", 413) from exc
            except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
                raise ImageRejected(file_name, f"corrupt or truncated image data: {exc}", 400) from exc

            if source_format in KEEP_AS_IS and image.mode == "RGB" and orientation == 1:
                ext = KEEP_AS_IS[source_format]
                sha256 = _copy_hashing(src, temp_path)
            else:
                ext = "jpg" if source_format in ("JPEG", "MPO") else "png"
                with temp_path.open("wb") as out:
                    if ext == "jpg":
                        rgb.save(out, format="JPEG", quality=95)
                    else:
                        rgb.save(out, format="PNG")
                sha256 = _hash_file(temp_path)
            out_w, out_h = rgb.size
    return PreparedImage(
        file_name=file_name,
        temp_path=temp_path,
        sha256=sha256,
        ext=ext,
        width=out_w,
        height=out_h,
        size_bytes=temp_path.stat().st_size,
    )
