"""Every table, importable from one place; importing this module registers them all on `Base.metadata`.

One file per table group. New tables go in a new module imported here, and into a new Alembic migration.
"""

from backend.models.base import Base
from backend.models.dashboard import ImageMaskCount, ImageMaskTotal, ImageStat, MaskSecondsBucket, MaskStat, MaskTotal
from backend.models.detectors import DetectorProposal, DetectorVersion
from backend.models.enums import (
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
from backend.models.images import Embedding, Image
from backend.models.jobs import Job
from backend.models.masks import AnnotationSession, Mask
from backend.models.model_versions import ModelVersion
from backend.models.projects import Project, ProjectMember
from backend.models.reviews import MaskReview, ReviewDecision
from backend.models.users import User

__all__ = [
    "AnnotationSession",
    "Base",
    "DetectorProposal",
    "DetectorVersion",
    "Embedding",
    "Image",
    "ImageMaskCount",
    "ImageMaskTotal",
    "ImageStat",
    "ImageStatus",
    "Job",
    "JobStatus",
    "Mask",
    "MaskReview",
    "MaskSecondsBucket",
    "MaskSource",
    "MaskStat",
    "MaskTotal",
    "ModelOrigin",
    "ModelStatus",
    "ModelVersion",
    "PrefillOutcome",
    "Project",
    "ProjectMember",
    "ReviewDecision",
    "ReviewStatus",
    "Role",
    "Stage",
    "User",
]
