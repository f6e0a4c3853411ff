"""No duplicate masks across stages (issue 18): detector pre-fill and auto-annotation skip a mask that an
image already has (IoU >= the project's ``duplicate_iou``), and count it; SQLite and PostgreSQL.

The masks are hand-built boxes whose IoUs are known exactly: the manual mask is rows/columns 20..80
(3600 pixels); ``NEAR`` shifts one row (IoU 3540/3600 = 0.983), ``PART`` drops 8 columns
(IoU 3120/3600 = 0.867), ``APART`` does not touch it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import select

from backend.auto.schemas import AutoParams
from backend.detection.service import store_proposals
from backend.masks import provenance
from backend.masks.duplicates import without_duplicates
from backend.masks.rle import iou_matrix
from backend.masks.writer import NewMask, add_mask
from backend.tables import DetectorVersion, Image, Mask, MaskSource, ModelStatus, Stage
from tests.backend.jobs_helpers import upload
from tests.backend.model_memo import MemoService, memo_models_fixture  # noqa: F401 - fixtures
from tests.backend.stage3_helpers import add_auto_masks, box_mask, record, rle_of
from tests.backend.test_auto_annotate import untrained_version  # noqa: F401 - a fixture

MANUAL = (20, 20, 80, 80)  # y0, x0, y1, x1
NEAR = (21, 20, 80, 80)
PART = (20, 20, 80, 72)
APART = (100, 100, 130, 130)


@pytest.fixture
def image(client, db, project, manager_headers, data_root) -> Image:
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    found = db.get(Image, image_id)
    assert found is not None
    return found


def _box(image: Image, box: tuple[int, int, int, int]) -> np.ndarray:
    return box_mask(image.height, image.width, *box)


def _manual(db, image: Image, box: tuple[int, int, int, int]) -> Mask:
    mask = add_mask(
        db,
        image,
        NewMask(
            mask=_box(image, box),
            source=MaskSource.manual,
            stage=Stage.assisted_manual,
            provenance={"origin": "annotated"},
        ),
    )
    db.commit()
    return mask


def _live(db, image: Image, source: MaskSource) -> list[Mask]:
    db.expire_all()
    return list(
        db.scalars(select(Mask).where(Mask.image_id == image.id, Mask.source == source, Mask.deleted_at.is_(None)))
    )


def test_iou_matrix_is_every_pair_in_one_call():
    a = [rle_of(box_mask(200, 200, *b)) for b in (NEAR, PART, APART)]
    ious = iou_matrix(a, [rle_of(box_mask(200, 200, *MANUAL))])
    assert ious.shape == (3, 1)
    assert ious[:, 0] == pytest.approx([3540 / 3600, 3120 / 3600, 0.0])
    assert iou_matrix(a, []).shape == (3, 0)


def test_auto_masks_skip_what_an_annotator_drew_and_keep_the_rest(db, project, image):
    _manual(db, image, MANUAL)
    stored = add_auto_masks(db, image, [_box(image, b) for b in (NEAR, PART, APART)])
    assert (stored.masks, stored.duplicates, stored.pending_review) == (2, 1, 2)  # fraction 1: all kept reviewed
    kept = sorted(m.area for m in _live(db, image, MaskSource.auto))
    assert kept == [30 * 30, 60 * 52]  # APART and PART (IoU 0.867 < 0.9); NEAR is the manual mask again
    assert len(_live(db, image, MaskSource.manual)) == 1


def test_the_project_setting_moves_the_threshold(db, project, image):
    project.settings = {"duplicate_iou": 0.85}
    db.commit()
    _manual(db, image, MANUAL)
    stored = add_auto_masks(db, image, [_box(image, b) for b in (NEAR, PART, APART)])
    assert (stored.masks, stored.duplicates) == (1, 2)  # PART's 0.867 is a duplicate now


def test_a_deleted_mask_is_no_reason_to_skip(db, project, image):
    mask = _manual(db, image, MANUAL)
    mask.deleted_at = datetime.now(UTC)
    db.commit()
    stored = add_auto_masks(db, image, [_box(image, NEAR)])
    assert (stored.masks, stored.duplicates) == (1, 0)


def test_detector_prefill_skips_duplicates_and_counts_them(db, project, image):
    _manual(db, image, MANUAL)
    detector = DetectorVersion(project_id=project.id, name="d", status=ModelStatus.ready)
    db.add(detector)
    db.commit()
    records = [
        {"segmentation": rle_of(_box(image, b)), "box": [b[1], b[0], b[3], b[2]], "score": 0.9, "predicted_iou": 0.9}
        for b in (NEAR, PART, APART)
    ]
    stored = store_proposals(db, image, detector, 3, records)
    assert (stored.masks, stored.duplicates, stored.already_proposed) == (2, 1, False)
    assert sorted(m.area for m in _live(db, image, MaskSource.detector)) == [30 * 30, 60 * 52]


def test_without_duplicates_on_an_image_without_masks_keeps_all(db, project, image):
    new = [
        NewMask(
            mask=_box(image, b), source=MaskSource.auto, stage=Stage.fully_automatic, provenance=provenance.auto({})
        )
        for b in (MANUAL, NEAR)
    ]
    kept = without_duplicates(db, image, new)
    assert (len(kept.masks), kept.skipped) == (2, 0)  # masks of one batch are not compared to each other


@pytest.mark.usefixtures("eager")
def test_auto_annotate_job_result_counts_the_skipped(client, db, project, manager_headers, image, monkeypatch):
    """The real task and job runner; the generator returns the known boxes (the model is not the point)."""
    _manual(db, image, MANUAL)
    boxes = [NEAR, PART, APART]
    monkeypatch.setattr(
        MemoService, "automatic_masks", lambda self, model, key, params: [record(_box(image, b)) for b in boxes]
    )
    response = client.post(f"/api/projects/{project.id}/auto-annotate", json={}, headers=manager_headers)
    assert response.status_code == 202, response.text
    job = client.get(f"/api/jobs/{response.json()['id']}", headers=manager_headers).json()
    assert job["status"] == "succeeded", job
    assert job["result"]["masks"] == 2 and job["result"]["skipped_duplicates"] == 1
    assert AutoParams().max_mask_fraction > (60 * 60) / (image.height * image.width)  # no box dropped as large
