"""What a round trains on: a snapshot of the project's accepted masks, split by image.

**Accepted** masks are the project's live masks (not deleted) whose review did not reject them,
from every stage and source (manual, detector pre-fills the annotators kept, automatic masks).
Masks covering more than `MAX_MASK_FRACTION` of their image are left out, as in the paper
(App. A: such masks are mostly background).

**Split by image**, never by mask (`backend.masks.split`, the seeded hash split detectors use too):
an image stays on the same side round after round as the project grows, so successive rounds are
compared on held-out images none of them trained on; with two images or more, each side has one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.clients.model_server import EmbeddingInfo, MaskSample, ModelRef, ModelService
from backend.embeddings import service as embeddings
from backend.masks.split import split_images
from backend.tables import Image, Mask, ModelVersion
from backend.tables.enums import ReviewStatus
from model_server.api import ImageMaskSample, Storage

MAX_MASK_FRACTION = 0.9


def accepted_masks_query(project_id: int):
    """SELECT of the project's accepted masks (see the module docstring), in id order."""
    return (
        select(Mask)
        .where(Mask.project_id == project_id, Mask.deleted_at.is_(None), Mask.review_status != ReviewStatus.rejected)
        .order_by(Mask.id)
    )


@dataclass
class Snapshot:
    """The masks of one round by image, and the counts recorded as the version's data snapshot."""

    train: dict[int, list[Mask]] = field(default_factory=dict)  # image id -> masks
    held_out: dict[int, list[Mask]] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def train_masks(self) -> int:
        return sum(len(m) for m in self.train.values())

    @property
    def held_out_masks(self) -> int:
        return sum(len(m) for m in self.held_out.values())


def take_snapshot(db: Session, project_id: int, held_out_fraction: float, seed: int) -> Snapshot:
    """The accepted masks of the project now, split by image, with counts per stage and source."""
    masks = list(db.scalars(accepted_masks_query(project_id)))
    sizes = {
        image.id: image.height * image.width
        for image in db.scalars(select(Image).where(Image.id.in_({m.image_id for m in masks})))
    }
    usable = [m for m in masks if 0 < m.area <= MAX_MASK_FRACTION * sizes[m.image_id]]
    by_image: dict[int, list[Mask]] = {}
    for mask in usable:
        by_image.setdefault(mask.image_id, []).append(mask)
    train_ids, held_ids = split_images(list(by_image), held_out_fraction, seed)
    snapshot = Snapshot(train={i: by_image[i] for i in train_ids}, held_out={i: by_image[i] for i in held_ids})
    snapshot.record = {
        "masks": len(usable),
        "images": len(by_image),
        "by_stage": dict(sorted(Counter(str(m.stage) for m in usable).items())),
        "by_source": dict(sorted(Counter(str(m.source) for m in usable).items())),
        "dropped_large_or_empty": len(masks) - len(usable),
        "train_images": len(train_ids),
        "train_masks": snapshot.train_masks,
        "held_out_images": len(held_ids),
        "held_out_masks": snapshot.held_out_masks,
        "held_out_image_ids": held_ids,
        "held_out_fraction": held_out_fraction,
        "split_seed": seed,
        "max_mask_id": max((m.id for m in masks), default=0),
    }
    return snapshot


def load_samples(
    db: Session,
    storage: Storage,
    client: ModelService,
    version: ModelVersion,
    masks_by_image: dict[int, list[Mask]],
) -> list[MaskSample]:
    """One `MaskSample` per mask (its stored RLE) with its image's embedding by `version` (computed if
    missing); the model side reads both."""
    samples: list[MaskSample] = []
    for image_id, masks in masks_by_image.items():
        image = db.get_one(Image, image_id)
        found = embeddings.info(embeddings.get_or_compute(db, storage, client, version, image))
        samples.extend(MaskSample(found, dict(mask.rle)) for mask in masks)
    return samples


def image_samples(db: Session, masks_by_image: dict[int, list[Mask]]) -> list[ImageMaskSample]:
    """One `ImageMaskSample` per mask (its image's storage key and its stored RLE): what a round that
    trains the image encoder learns from; no embedding is computed for these images."""
    samples: list[ImageMaskSample] = []
    for image_id, masks in masks_by_image.items():
        image = db.get_one(Image, image_id)
        samples.extend(ImageMaskSample(image.storage_key, dict(mask.rle)) for mask in masks)
    return samples


def embed_held_out(
    db: Session, client: ModelService, model: ModelRef, masks_by_image: dict[int, list[Mask]]
) -> tuple[dict[int, EmbeddingInfo], list[MaskSample]]:
    """The images embedded by `model` in one model call (image id -> its `EmbeddingInfo`) and one
    `MaskSample` per mask on those embeddings: a new encoder's view of the held-out images, before
    the version it belongs to is registered."""
    images = [db.get_one(Image, image_id) for image_id in masks_by_image]
    found = dict(zip(masks_by_image, client.embed(model, [image.storage_key for image in images])))
    samples = [
        MaskSample(found[image_id], dict(mask.rle)) for image_id, masks in masks_by_image.items() for mask in masks
    ]
    return found, samples
