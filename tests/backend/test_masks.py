"""backend/masks: the one writer of mask rows (canonical RLE, pycocotools' area and box, provenance,
one multi-row INSERT for many masks), on SQLite and PostgreSQL; and the train/held-out image split."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_util
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from backend.masks import provenance, writer
from backend.masks.rle import CheckedMask, EmptyMask, InvalidRle, checked_mask
from backend.masks.split import split_images
from backend.masks.writer import NewMask, add_mask, insert_masks
from backend.tables import Image, Mask, MaskSource, MaskTotal, Project, ReviewStatus, Stage

H, W = 30, 40


def _pixels(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    pixels = np.zeros((H, W), dtype=bool)
    pixels[y0:y1, x0:x1] = True
    pixels[y0, x1] = True  # not a plain rectangle: the box and the runs have to be right
    return pixels


def _official(pixels: np.ndarray) -> tuple[dict[str, Any], int, list[float]]:
    """pycocotools' own RLE (str counts), area and box of a binary mask."""
    encoded = mask_util.encode(np.asfortranarray(pixels.astype(np.uint8)))
    rle = {"size": [H, W], "counts": encoded["counts"].decode("ascii")}
    return rle, int(mask_util.area(encoded)), [float(v) for v in mask_util.toBbox(encoded)]


def _runs(pixels: np.ndarray) -> list[int]:
    """Uncompressed COCO runs (column-major, zeros first) of a binary mask."""
    flat = pixels.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = [0, *edges.tolist(), flat.size]
    runs = np.diff(bounds).tolist()
    return runs if flat[0] == 0 else [0, *runs]


@pytest.fixture
def image(db: Session, project: Project) -> Image:
    row = Image(
        project_id=project.id,
        file_name="a.png",
        storage_key="k",
        sha256="s" * 64,
        width=W,
        height=H,
        size_bytes=1,
    )
    db.add(row)
    db.commit()
    return row


@pytest.fixture
def statements(db: Session) -> Iterator[list[str]]:
    """Every SQL statement the session's engine runs from now on (executemany counted once per call)."""
    seen: list[str] = []
    engine = db.get_bind()

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append(("EXECUTEMANY " if executemany else "") + statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_every_form_of_a_mask_becomes_pycocotools_canonical_rle_area_and_box():
    pixels = _pixels(3, 5, 20, 17)
    rle, area, bbox = _official(pixels)
    runs = _runs(pixels)
    # A compressed string with an empty run inside: the same pixels, not the canonical string.
    padded = mask_util.frPyObjects({"size": [H, W], "counts": [runs[0], runs[1], 0, 0, *runs[2:]]}, H, W)
    forms = {
        "compressed": rle,
        "bytes counts": {"size": (H, W), "counts": rle["counts"].encode("ascii")},
        "runs": {"size": [H, W], "counts": runs},
        "padded runs": {"size": [H, W], "counts": padded["counts"].decode("ascii")},
        "bool array": pixels,
        "uint8 array": pixels.astype(np.uint8),
    }
    assert forms["padded runs"]["counts"] != rle["counts"]
    for name, form in forms.items():
        checked = checked_mask(form, H, W)
        assert checked == CheckedMask(rle=rle, bbox=bbox, area=area), name
    # COCO's box: width x_max - x_min + 1.
    assert bbox == [5.0, 3.0, 13.0, 17.0] and area == 17 * 12 + 1
    already = checked_mask(pixels, H, W)
    assert checked_mask(already, H, W) is already


def test_any_runs_of_the_same_pixels_give_the_encoders_string():
    """Empty runs anywhere (first, inside, last), a mask starting with foreground, noise: the string is
    the one pycocotools' encoder writes for the decoded pixels."""
    rng = np.random.default_rng(0)
    for trial in range(60):
        pixels = rng.random((H, W)) < rng.choice([0.02, 0.5, 0.98])
        pixels[0, 0] = bool(trial % 2)
        if not pixels.any():
            continue
        rle, area, bbox = _official(pixels)
        runs = _runs(pixels)
        for _ in range(trial % 4):  # an empty pair of runs splits a run in two
            at = int(rng.integers(1, len(runs)))
            split = int(rng.integers(0, runs[at] + 1))
            runs = [*runs[:at], split, 0, runs[at] - split, *runs[at + 1 :]]
        if trial % 3 == 0:
            runs = [*runs, 0] if len(runs) % 2 else [*runs, 0, 0]  # trailing empty runs
        for form in ({"size": [H, W], "counts": runs}, mask_util.frPyObjects({"size": [H, W], "counts": runs}, H, W)):
            assert checked_mask(form, H, W) == CheckedMask(rle=rle, bbox=bbox, area=area), (trial, runs)


@pytest.mark.parametrize(
    ("form", "error", "message"),
    [
        (np.zeros((H, W), dtype=bool), EmptyMask, "empty"),
        ({"size": [H, W], "counts": [H * W]}, EmptyMask, "empty"),
        (np.ones((W, H), dtype=bool), InvalidRle, "shape"),
        ({"size": [H + 1, W], "counts": [(H + 1) * W]}, InvalidRle, "does not match"),
        ({"size": [H, W], "counts": [5, 5]}, InvalidRle, "covers 10 pixels"),
    ],
)
def test_a_mask_that_is_not_one_of_the_image_is_refused(form, error, message):
    with pytest.raises(error, match=message):
        checked_mask(form, H, W)


def test_add_mask_stores_one_row_with_its_provenance(db, image, project):
    pixels = _pixels(2, 2, 9, 30)
    rle, area, bbox = _official(pixels)
    prompts = {"points": [{"x": 3.0, "y": 4.0, "label": 1}], "strokes": 0}
    mask = add_mask(
        db,
        image,
        NewMask(
            mask={"size": [H, W], "counts": _runs(pixels)},
            source=MaskSource.manual,
            stage=Stage.assisted_manual,
            provenance=provenance.annotated(prompts),
            client_id="c-1",
            seconds_spent=4.5,
            clicks=1,
        ),
    )
    assert mask.id is not None  # flushed
    db.commit()
    db.expire_all()
    stored = db.get(Mask, mask.id)
    assert (stored.rle, stored.area, stored.bbox) == (rle, area, bbox)
    assert stored.provenance == {"origin": "annotated", "prompts": prompts}
    assert provenance.prompts_of(stored.provenance) == prompts
    assert (stored.project_id, stored.client_id, stored.seconds_spent, stored.clicks) == (project.id, "c-1", 4.5, 1)
    assert stored.review_status == ReviewStatus.none and stored.point_coords is None
    assert db.scalar(select(func.count()).select_from(Mask).where(Mask.point_coords.is_(None))) == 1


def test_insert_masks_is_one_multi_row_insert(db, image, statements):
    shapes = [_pixels(y, x, y + 5, x + 7) for y in range(0, 20, 5) for x in range(0, 30, 10)]
    news = [
        NewMask(
            mask=pixels,
            source=MaskSource.auto,
            stage=Stage.fully_automatic,
            provenance=provenance.auto({"model_version_id": 3, "job_id": 12}),
            review_status=ReviewStatus.pending if index % 2 else ReviewStatus.none,
            predicted_iou=0.9,
            stability_score=0.95,
            point_coords=[[float(index), 1.0]] if index % 3 else None,
            crop_box=[0.0, 0.0, float(W), float(H)],
        )
        for index, pixels in enumerate(shapes)
    ]
    statements.clear()
    assert insert_masks(db, image, news) == len(shapes) == 12
    inserts = [s for s in statements if "INSERT" in s.upper()]
    assert len(inserts) == 1, inserts  # insertmanyvalues: one multi-row statement (the event calls it executemany)
    assert inserts[0].upper().count("VALUES") == 1 and inserts[0].count("(") > len(shapes)
    db.commit()

    stored = list(db.scalars(select(Mask).order_by(Mask.id)))
    assert len(stored) == len(shapes)
    for index, (mask, pixels) in enumerate(zip(stored, shapes, strict=True)):
        rle, area, bbox = _official(pixels)
        assert (mask.rle, mask.area, mask.bbox) == (rle, area, bbox)
        assert mask.provenance == {"origin": "auto", "model_version_id": 3, "job_id": 12}
        assert mask.source == MaskSource.auto and mask.stage == Stage.fully_automatic
        assert mask.review_status == (ReviewStatus.pending if index % 2 else ReviewStatus.none)
        assert mask.point_coords == ([[float(index), 1.0]] if index % 3 else None)
        assert mask.created_at == stored[0].created_at and mask.author_id is None
    # Absent JSON is SQL NULL, as on the one-mask path.
    assert db.scalar(select(func.count()).select_from(Mask).where(Mask.point_coords.is_(None))) == 4
    # The rollup triggers counted every row of the one statement.
    totals = db.scalar(
        select(func.sum(MaskTotal.masks)).where(MaskTotal.project_id == image.project_id, MaskTotal.source == "auto")
    )
    assert totals == len(shapes)


def test_insert_masks_pages_large_batches_and_checks_all_first(db, image, statements, monkeypatch):
    monkeypatch.setattr(writer, "ROWS_PER_STATEMENT", 4)
    news = [
        NewMask(
            mask=_pixels(1, i, 5, i + 2),
            source=MaskSource.detector,
            stage=Stage.semi_automatic,
            provenance=provenance.detector(1, 2, [0, 0, 4, 4], 0.8),
        )
        for i in range(10)
    ]
    statements.clear()
    assert insert_masks(db, image, news) == 10
    assert len([s for s in statements if "INSERT" in s.upper()]) == 3
    assert insert_masks(db, image, []) == 0
    db.commit()
    stored = db.scalars(select(Mask.provenance)).all()
    assert stored == [
        {"origin": "detector", "detector_version_id": 1, "model_version_id": 2, "box": [0.0, 0.0, 4.0, 4.0],
         "detector_score": 0.8}
    ] * 10  # fmt: skip

    bad = [news[0], NewMask(mask={"size": [H, W], "counts": [3]}, **_kind(news[0]))]
    statements.clear()
    with pytest.raises(InvalidRle):
        insert_masks(db, image, bad)
    assert not [s for s in statements if "INSERT" in s.upper()]
    with pytest.raises(ValueError, match="origin"):
        insert_masks(db, image, [NewMask(mask=news[0].mask, source=MaskSource.auto, stage=Stage.done, provenance={})])


def _kind(new: NewMask) -> dict[str, Any]:
    return {"source": new.source, "stage": new.stage, "provenance": new.provenance}


def test_imported_masks_have_their_own_source(db, image):
    mask = add_mask(
        db,
        image,
        NewMask(
            mask=_pixels(0, 0, 3, 3),
            source=MaskSource.imported,
            stage=Stage.assisted_manual,
            provenance=provenance.imported("yolo", file="a.txt", line=3),
        ),
    )
    db.commit()
    db.expire_all()
    stored = db.get(Mask, mask.id)
    assert stored.source == MaskSource.imported
    assert stored.provenance == {"origin": "imported", "format": "yolo", "file": "a.txt", "line": 3}
    assert provenance.prompts_of(stored.provenance) is None


def test_split_by_image_is_seeded_stable_and_never_empty():
    ids = list(range(1, 41))
    train, held = split_images(ids, 0.25, seed=3)
    assert sorted(train + held) == ids and not set(train) & set(held)
    assert 4 <= len(held) <= 18
    assert split_images(ids, 0.25, seed=3) == (train, held)
    # Growing the project keeps every old image on its side.
    train2, held2 = split_images(ids + list(range(41, 81)), 0.25, seed=3)
    assert set(held) <= set(held2) and set(train) <= set(train2)
    assert split_images(ids, 0.25, seed=4) != (train, held)
    for pair in ([7, 9], [1, 2], [5, 6]):
        t, h = split_images(pair, 0.5, seed=0)
        assert len(t) == 1 and len(h) == 1
    assert split_images([5], 0.5, seed=0)[0] + split_images([5], 0.5, seed=0)[1] == [5]
    with pytest.raises(ValueError, match="held_out_fraction"):
        split_images(ids, 1.0, seed=0)


def test_split_keeps_the_minimum_on_each_side():
    """A detector trains on two images at least (one calibrates its scores) and holds one out."""
    for seed in range(20):
        for fraction in (0.01, 0.5, 0.99):
            train, held = split_images([1, 2, 3], fraction, seed, min_train=2)
            assert len(train) == 2 and len(held) == 1, (seed, fraction)
            train, held = split_images(range(1, 11), fraction, seed, min_train=2)
            assert len(train) >= 2 and len(held) >= 1 and sorted(train + held) == list(range(1, 11))
    # The minimums only move images nearest the threshold: the hash's own choice is kept otherwise.
    train, held = split_images(range(1, 101), 0.3, seed=1, min_train=2)
    assert (train, held) == split_images(range(1, 101), 0.3, seed=1)
