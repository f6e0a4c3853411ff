from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, computed_field

from backend.api.types import DbId, RequestModel
from backend.tables import ImageStatus


class ImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    file_name: str
    width: int
    height: int
    size_bytes: int
    sha256: str
    status: ImageStatus
    assignee_id: int | None  # who holds the claim (live lock) now
    assigned_to: int | None  # who the image is reserved for (`POST /api/images/{id}/assign`)
    assigned_username: str | None
    mask_count: int  # live masks (not deleted)
    uncovered_fraction: float  # share of the image no live mask covers: what is still missing (0..1)
    near_duplicate_of: int | None  # an earlier image of the project it nearly repeats (flagged, not refused)
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def thumbnail_url(self) -> str:
        return f"/api/images/{self.id}/thumbnail"


class DuplicateOut(BaseModel):
    file_name: str
    image_id: int  # the image already holding this content


class RefusedOut(BaseModel):
    file_name: str
    reason: str


class UploadOut(BaseModel):
    images: list[ImageOut]
    duplicates: list[DuplicateOut]
    refused: list[RefusedOut]  # files not stored (only with `?partial=true`; otherwise the upload fails)


class AssignIn(RequestModel):
    user_id: DbId | None  # a member of the project, or null to free the image for anyone
