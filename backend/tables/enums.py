"""Every enumerated value stored in the database, in one place so API schemas and tables agree."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    """A user's global role (DESIGN.md §3 Roles)."""

    admin = "admin"
    manager = "manager"
    annotator = "annotator"
    ml_engineer = "ml_engineer"


class Stage(enum.StrEnum):
    """The data-engine stage a project (or a mask's creation) is in (DESIGN.md §2)."""

    assisted_manual = "assisted_manual"
    semi_automatic = "semi_automatic"
    fully_automatic = "fully_automatic"
    done = "done"


class ImageStatus(enum.StrEnum):
    """An image's state in its project's current stage."""

    new = "new"
    in_progress = "in_progress"
    done = "done"
    skipped = "skipped"


class MaskSource(enum.StrEnum):
    """Who drew a mask: an annotator, the detector pre-fill, the automatic generator, or another tool
    whose files were imported (migration 0010)."""

    manual = "manual"
    detector = "detector"
    auto = "auto"
    imported = "imported"


class ReviewStatus(enum.StrEnum):
    none = "none"
    pending = "pending"
    accepted = "accepted"
    fixed = "fixed"
    rejected = "rejected"


class PrefillOutcome(enum.StrEnum):
    """What an annotator did with a pre-filled (detector/auto) mask."""

    kept = "kept"
    corrected = "corrected"
    deleted = "deleted"


class ModelOrigin(enum.StrEnum):
    official = "official"
    trained = "trained"
    untrained = "untrained"


class ModelStatus(enum.StrEnum):
    training = "training"
    ready = "ready"
    failed = "failed"
    archived = "archived"


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
