"""Every table, importable from one place; importing this module registers them all on `Base.metadata`.

One file per table group. New tables go in a new module imported here, and into a new Alembic migration.
"""

from backend.tables.base import Base
from backend.tables.dashboard import (
    ImageMaskCount,
    ImageMaskTotal,
    ImageStat,
    MaskSecondsBucket,
    MaskTotal,
    ReviewTotal,
    TimelineAuthorDay,
    TimelineAuthorHour,
    TimelineDay,
    TimelineHour,
)
from backend.tables.detectors import DetectorProposal, DetectorVersion
from backend.tables.enums import (
    ImageStatus,
    JobStatus,
    MaskSource,
    ModelOrigin,
    ModelStatus,
    PrefillOutcome,
    ReviewStatus,
    Role,
    Stage,
)
from backend.tables.images import Embedding, Image
from backend.tables.jobs import Job
from backend.tables.masks import AnnotationSession, Mask
from backend.tables.model_versions import ModelVersion
from backend.tables.projects import Project, ProjectMember
from backend.tables.reviews import MaskReview, ReviewDecision
from backend.tables.selection import ImageScore
from backend.tables.users import User
from backend.tables.webhooks import Webhook, WebhookDelivery

__all__ = [
    "AnnotationSession",
    "Base",
    "DetectorProposal",
    "DetectorVersion",
    "Embedding",
    "Image",
    "ImageMaskCount",
    "ImageMaskTotal",
    "ImageScore",
    "ImageStat",
    "ImageStatus",
    "Job",
    "JobStatus",
    "Mask",
    "MaskReview",
    "MaskSecondsBucket",
    "MaskSource",
    "MaskTotal",
    "ModelOrigin",
    "ModelStatus",
    "ModelVersion",
    "PrefillOutcome",
    "Project",
    "ProjectMember",
    "ReviewDecision",
    "ReviewStatus",
    "ReviewTotal",
    "Role",
    "Stage",
    "TimelineAuthorDay",
    "TimelineAuthorHour",
    "TimelineDay",
    "TimelineHour",
    "User",
    "Webhook",
    "WebhookDelivery",
]
