from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from backend.models import ImageStatus


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
    assignee_id: int | None
    created_at: datetime


class DuplicateOut(BaseModel):
    file_name: str
    image_id: int  # the image already holding this content


class UploadOut(BaseModel):
    images: list[ImageOut]
    duplicates: list[DuplicateOut]
