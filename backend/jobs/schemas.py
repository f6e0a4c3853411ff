"""What the API says about a job."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from backend.tables.enums import JobStatus


class JobOut(BaseModel):
    """A job as the UI shows it: `progress` is 0..1; `params` are its inputs, `attempts` the runs it
    was given, `result` what its work reported (live figures while it runs, its summary once done);
    `error` is set when `status` is failed."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int | None
    kind: str
    status: JobStatus
    progress: float
    message: str
    params: dict[str, Any]
    attempts: int
    result: dict[str, Any] | None
    error: str | None
    created_by: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
