"""Jobs: read one, list a project's, follow one live (Server-Sent Events), cancel.

Who sees a job: whoever sees its project (admins, members); a job without a project only its
creator and admins. Everyone else gets 404, as for an unknown id.

``GET /api/jobs/{id}/events`` streams ``event: job`` messages whose data is the `JobOut` JSON,
one each time the job changes, then ``event: end`` once it is finished. Browsers' EventSource
cannot send headers, so this route also accepts ``?ticket=``: a JWT of purpose ``job-events`` for
this one job, valid 60 s (`Settings.job_events_ticket_seconds`), from
``POST /api/jobs/{id}/events/ticket``. The bearer token itself is never accepted in the URL, where
access logs would record it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from backend.api.deps import (
    MEMBER_ROLES,
    CurrentUser,
    JobForCanceller,
    JobForMember,
    ProjectForMember,
    SessionDep,
    SettingsDep,
    job_for,
)
from backend.api.types import PathId
from backend.auth.service import user_from_token
from backend.core.security import ACCESS, JOB_EVENTS, create_job_events_ticket
from backend.jobs import service
from backend.jobs.schemas import JobOut
from backend.tables import Job

router = APIRouter(tags=["jobs"])

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


@router.get("/api/jobs/{job_id}")
def get_job(job: JobForMember) -> JobOut:
    return JobOut.model_validate(job)


@router.post("/api/jobs/{job_id}/cancel")
def cancel_job(job: JobForCanceller, db: SessionDep) -> JobOut:
    """Managers and ML engineers of the project cancel any of its jobs; other members their own."""
    return JobOut.model_validate(service.cancel(db, job))


@router.get("/api/projects/{project_id}/jobs")
def list_project_jobs(
    project: ProjectForMember,
    db: SessionDep,
    kind: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[JobOut]:
    return [JobOut.model_validate(job) for job in service.list_project_jobs(db, project.id, kind, limit)]


class EventsTicket(BaseModel):
    ticket: str
    expires_in: int  # seconds


@router.post("/api/jobs/{job_id}/events/ticket")
def job_events_ticket(job: JobForMember, user: CurrentUser, settings: SettingsDep) -> EventsTicket:
    """A short-lived ticket that opens this job's event stream (`?ticket=`), for EventSource."""
    seconds = settings.job_events_ticket_seconds
    ticket = create_job_events_ticket(
        user.id, user.token_version, job.id, settings.ensure_secret_key(), seconds, settings.jwt_algorithm
    )
    return EventsTicket(ticket=ticket, expires_in=seconds)


_job_for_member = job_for(*MEMBER_ROLES)


def _events_job(
    job_id: PathId,
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    ticket: Annotated[str | None, Query(max_length=4096)] = None,
) -> Job:
    """The job, for a member authenticated by the bearer header or by a ticket for this very job."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        user = user_from_token(db, settings, header[7:], ACCESS)
    else:
        user = user_from_token(db, settings, ticket, JOB_EVENTS, job_id) if ticket else None
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="invalid or expired token or ticket",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return _job_for_member(job_id, db, user)


_events_job.authorization = _job_for_member.authorization  # type: ignore[attr-defined]


@router.get("/api/jobs/{job_id}/events", response_class=StreamingResponse)
async def job_events(job: Annotated[Job, Depends(_events_job)], request: Request) -> StreamingResponse:
    job_id = job.id
    sessions = request.app.state.session_factory

    def snapshot() -> JobOut:
        with sessions() as session:
            return JobOut.model_validate(session.get(Job, job_id))

    async def events() -> AsyncIterator[str]:
        last: str | None = None
        quiet = 0.0
        while True:
            job = await run_in_threadpool(snapshot)
            data = job.model_dump_json()
            if data != last:
                yield f"event: job\ndata: {data}\n\n"
                last, quiet = data, 0.0
            if job.status in service.FINISHED:
                yield "event: end\ndata: {}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_SECONDS)
            quiet += POLL_SECONDS
            if quiet >= KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet = 0.0

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
