"""Image upload, listing, files and thumbnails; bad inputs are clear 4xx with nothing half-stored."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from backend.tables import Image, Role


def _png(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png_header(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG that declares width x height RGB pixels but carries a few bytes: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _corrupt_png_pixels() -> bytes:
    """A valid PNG header followed by an IDAT chunk whose zlib stream is garbage (correct CRC)."""
    ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", b"\x78\x9c" + bytes(range(200)))
        + _chunk(b"IEND", b"")
    )


def _files(*items: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


def _stored_files(settings) -> list[Path]:
    return [p for p in settings.storage_path.rglob("*") if p.is_file()]


def _image_rows(db) -> int:
    db.expire_all()
    return db.scalar(select(func.count(Image.id)))


def _upload(client, project, headers, *items):
    return client.post(f"/api/projects/{project.id}/images", files=_files(*items), headers=headers)


def test_upload_many_list_get_and_file_round_trip(client, project, manager_headers, image_bytes, settings, db):
    gray = _png(PILImage.fromarray(np.arange(48 * 64, dtype=np.uint8).reshape(48, 64) % 251, "L"))
    response = _upload(client, project, manager_headers, ("photo.jpg", image_bytes), ("dir/gray.png", gray))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["duplicates"] == []
    photo, gray_out = body["images"]
    original = PILImage.open(io.BytesIO(image_bytes))
    assert (photo["width"], photo["height"]) == original.size
    assert photo["status"] == "new" and photo["assignee_id"] is None
    assert gray_out["file_name"] == "gray.png"  # client paths are dropped
    assert (gray_out["width"], gray_out["height"]) == (64, 48)

    listed = client.get(f"/api/projects/{project.id}/images", headers=manager_headers).json()
    assert [i["id"] for i in listed] == [photo["id"], gray_out["id"]]
    assert (
        client.get(f"/api/projects/{project.id}/images?limit=1&offset=1", headers=manager_headers).json()[0]["id"]
        == gray_out["id"]
    )
    assert client.get(f"/api/projects/{project.id}/images?status=done", headers=manager_headers).json() == []
    assert client.get(f"/api/projects/{project.id}", headers=manager_headers).json()["image_count"] == 2
    assert client.get(f"/api/images/{photo['id']}", headers=manager_headers).json() == photo

    # An RGB JPEG with no EXIF rotation is stored byte for byte; a grayscale PNG is stored as RGB.
    file = client.get(f"/api/images/{photo['id']}/file", headers=manager_headers)
    assert file.status_code == 200
    assert file.headers["content-type"] == "image/jpeg"
    assert file.content == image_bytes
    gray_file = PILImage.open(
        io.BytesIO(client.get(f"/api/images/{gray_out['id']}/file", headers=manager_headers).content)
    )
    assert gray_file.mode == "RGB"
    assert np.array_equal(np.asarray(gray_file)[..., 0], np.asarray(PILImage.open(io.BytesIO(gray))))
    assert _image_rows(db) == 2
    assert not list((settings.storage_path / ".tmp").iterdir())
    assert not list((settings.data_dir / "tmp").iterdir())  # the uploads' scratch files are consumed


def test_exif_orientation_is_applied(client, project, manager_headers):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red
    image = PILImage.fromarray(pixels, "RGB")
    exif = PILImage.Exif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 degrees clockwise
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    out = _upload(client, project, manager_headers, ("rot.jpg", buffer.getvalue())).json()["images"][0]
    assert (out["width"], out["height"]) == (20, 40)
    stored = np.asarray(
        PILImage.open(io.BytesIO(client.get(f"/api/images/{out['id']}/file", headers=manager_headers).content))
    )
    assert stored.shape == (40, 20, 3)
    assert stored[:15, :, 0].mean() > 200 and stored[25:, :, 0].mean() < 60  # red ended on top


@pytest.mark.parametrize("mode", ["RGBA", "P", "CMYK", "I;16", "1", "LA"])
def test_any_mode_is_stored_as_rgb(client, project, manager_headers, mode):
    base = PILImage.fromarray((np.arange(30 * 20 * 3) % 256).astype(np.uint8).reshape(30, 20, 3), "RGB")
    image = (
        base.convert(mode)
        if mode != "I;16"
        else PILImage.fromarray((np.arange(600, dtype=np.uint16) * 100).reshape(30, 20))
    )
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if mode == "CMYK" else "PNG")
    response = _upload(client, project, manager_headers, (f"m.{mode}", buffer.getvalue()))
    assert response.status_code == 201, response.text
    out = response.json()["images"][0]
    stored = PILImage.open(io.BytesIO(client.get(f"/api/images/{out['id']}/file", headers=manager_headers).content))
    assert stored.mode == "RGB" and stored.size == (20, 30)


def test_duplicates_are_reported_not_stored_twice(client, project, manager_headers, image_bytes, settings, db, manager):
    first = _upload(client, project, manager_headers, ("a.jpg", image_bytes)).json()["images"][0]
    again = _upload(client, project, manager_headers, ("b.jpg", image_bytes), ("c.jpg", image_bytes))
    assert again.status_code == 201
    assert again.json() == {
        "images": [],
        "duplicates": [
            {"file_name": "b.jpg", "image_id": first["id"]},
            {"file_name": "c.jpg", "image_id": first["id"]},
        ],
        "refused": [],
    }
    other = client.post("/api/projects", json={"name": "other"}, headers=manager_headers).json()
    batch = client.post(
        f"/api/projects/{other['id']}/images",
        files=_files(("x.jpg", image_bytes), ("y.jpg", image_bytes)),
        headers=manager_headers,
    ).json()
    assert len(batch["images"]) == 1
    assert batch["duplicates"] == [{"file_name": "y.jpg", "image_id": batch["images"][0]["id"]}]
    assert _image_rows(db) == 2
    assert len(_stored_files(settings)) == 1  # same content, one file for both projects


BAD_UPLOADS = {
    "text named .jpg": (("notes.jpg", b"this is not an image\n" * 10), 415, "not a supported image"),
    "truncated jpeg": (None, 400, "corrupt or truncated"),
    "garbage after a jpeg header": (
        ("bad.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8),
        415,
        "not a supported image",
    ),
    "png with corrupt pixel data": (None, 400, "corrupt or truncated"),
    "30000x30000 png": (("bomb.png", huge_png_header()), 413, "image too large"),
    "zero-byte file": (("empty.png", b""), 400, "empty"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_files_are_refused_and_nothing_is_stored(case, client, project, manager_headers, image_bytes, settings, db):
    item, status, message = BAD_UPLOADS[case]
    if case == "truncated jpeg":
        item = ("half.jpg", image_bytes[: len(image_bytes) // 2])
    elif case == "png with corrupt pixel data":
        item = ("broken.png", _corrupt_png_pixels())
    # The bad file travels with a good one: the whole upload is refused, the good one is not stored either.
    response = _upload(client, project, manager_headers, ("good.jpg", image_bytes), item)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert item[0] in detail and "nothing stored" in detail
    assert "good.jpg" not in detail
    if message:
        assert message in detail
    assert _image_rows(db) == 0
    assert _stored_files(settings) == []


def test_pixel_limit_comes_from_settings(client, project, manager_headers, settings, db):
    settings.max_image_pixels = 5000  # 100x100 = 10000 pixels: refused from the header
    response = _upload(client, project, manager_headers, ("small.png", _png(PILImage.new("RGB", (100, 100)))))
    assert response.status_code == 413, response.text
    assert "10000 pixels exceeds the limit of 5000" in response.json()["detail"]
    assert _image_rows(db) == 0 and _stored_files(settings) == []


def test_empty_upload_is_400(client, project, manager_headers):
    response = client.post(f"/api/projects/{project.id}/images", headers=manager_headers)
    assert response.status_code == 400
    assert "no files" in response.json()["detail"]
    response = client.post(f"/api/projects/{project.id}/images", data={"other": "x"}, headers=manager_headers)
    assert response.status_code == 400


def test_over_size_limits_are_413_and_nothing_stored(client, project, manager_headers, image_bytes, settings, db):
    settings.max_upload_bytes = len(image_bytes) - 1
    response = _upload(client, project, manager_headers, ("big.jpg", image_bytes))
    assert response.status_code == 413
    assert "big.jpg" in response.json()["detail"]
    settings.max_upload_bytes = 10**9
    settings.max_request_bytes = 50_000
    response = _upload(client, project, manager_headers, *[(f"{i}.jpg", image_bytes) for i in range(4)])
    assert response.status_code == 413
    assert "request body too large" in response.json()["detail"]
    settings.max_request_bytes = 10**9
    settings.max_files_per_request = 2
    response = _upload(client, project, manager_headers, *[(f"{i}.png", b"x") for i in range(3)])
    assert response.status_code == 413
    assert _image_rows(db) == 0 and _stored_files(settings) == []


def test_chunked_body_over_the_limit_is_413(client, project, manager_headers, settings):
    settings.max_request_bytes = 10_000

    def body():
        for _ in range(10):
            yield b"x" * 4096

    response = client.post(
        f"/api/projects/{project.id}/images",
        content=body(),
        headers={**manager_headers, "Content-Type": "multipart/form-data; boundary=abc"},
    )
    assert response.status_code == 413


def test_thumbnail_is_a_small_jpeg_cached_in_storage(client, project, manager_headers, image_bytes, settings):
    out = _upload(client, project, manager_headers, ("photo.jpg", image_bytes)).json()["images"][0]
    response = client.get(f"/api/images/{out['id']}/thumbnail", headers=manager_headers)
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    thumb = PILImage.open(io.BytesIO(response.content))
    assert thumb.format == "JPEG" and max(thumb.size) == 256
    assert abs(thumb.size[0] / thumb.size[1] - out["width"] / out["height"]) < 0.02
    cached = list((settings.storage_path / "thumbnails").rglob("*.jpg"))
    assert len(cached) == 1
    assert client.get(f"/api/images/{out['id']}/thumbnail", headers=manager_headers).content == cached[0].read_bytes()


def test_roles_and_membership_for_images(client, project, manager_headers, image_bytes, make_user, login):
    out = _upload(client, project, manager_headers, ("photo.jpg", image_bytes)).json()["images"][0]
    annotator = make_user(Role.annotator, "ann")
    headers = login(annotator)
    outsider = login(make_user(Role.manager, "outsider"))
    paths = [f"/api/images/{out['id']}", f"/api/images/{out['id']}/file", f"/api/images/{out['id']}/thumbnail"]
    for path in paths:
        assert client.get(path, headers=outsider).status_code == 404, path
        assert client.get(path, headers=headers).status_code == 404, path
        assert client.get(path).status_code == 401
    client.post(f"/api/projects/{project.id}/members", json={"user_id": annotator.id}, headers=manager_headers)
    for path in paths:
        assert client.get(path, headers=headers).status_code == 200, path
    assert len(client.get(f"/api/projects/{project.id}/images", headers=headers).json()) == 1
    # annotators do not upload
    assert _upload(client, project, headers, ("x.jpg", image_bytes)).status_code == 403


def test_unknown_ids_and_bad_queries(client, project, admin_headers):
    for path in (
        "/api/images/999999",
        "/api/images/999999/file",
        "/api/images/999999/thumbnail",
        "/api/projects/999999/images",
    ):
        response = client.get(path, headers=admin_headers)
        assert response.status_code == 404, path
        assert "not found" in response.json()["detail"]
    for query in ("status=bogus", "limit=0", "limit=100000", "offset=-1"):
        assert client.get(f"/api/projects/{project.id}/images?{query}", headers=admin_headers).status_code == 422, query


def test_uncovered_fraction_follows_the_live_masks(client, project, manager_headers, image_bytes, db):
    """The list's "what is still missing": 1 with no mask, the union's complement after two overlapping
    masks (the writer keeps it), and back when a mask is deleted (the soft delete keeps it)."""
    from backend.masks.writer import NewMask, add_mask
    from backend.tables import MaskSource, Stage

    (out,) = _upload(client, project, manager_headers, ("a.jpg", image_bytes)).json()["images"]
    assert out["uncovered_fraction"] == 1.0
    image = db.get(Image, out["id"])
    h, w = image.height, image.width
    top, lower = np.zeros((h, w), dtype=bool), np.zeros((h, w), dtype=bool)
    top[: h // 2], lower[h // 4 : 3 * h // 4] = True, True
    ids = [
        add_mask(
            db,
            image,
            NewMask(mask=m, source=MaskSource.manual, stage=Stage.assisted_manual, provenance={"origin": "annotated"}),
        ).id
        for m in (top, lower)
    ]
    db.commit()

    def listed() -> float:
        return client.get(f"/api/projects/{project.id}/images", headers=manager_headers).json()[0]["uncovered_fraction"]

    assert listed() == pytest.approx(1 - (3 * h // 4) * w / (h * w))
    assert client.delete(f"/api/masks/{ids[1]}", headers=manager_headers).status_code == 204
    assert listed() == pytest.approx(1 - (h // 2) * w / (h * w))
    assert client.delete(f"/api/masks/{ids[0]}", headers=manager_headers).status_code == 204
    assert listed() == 1.0
