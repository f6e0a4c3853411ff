"""Webhook endpoints (the project's managers):

- ``POST /api/projects/{id}/webhooks`` `{url, events, secret?}` → 201 the hook, with its secret (a
  random one when none is given; shown here and in the list to managers only);
- ``GET /api/projects/{id}/webhooks``: the hooks with their last attempt's status and answer;
- ``DELETE /api/projects/{id}/webhooks/{webhook_id}``;
- ``POST /api/projects/{id}/webhooks/{webhook_id}/test`` → 202 a ``test`` delivery;
- ``GET /api/projects/{id}/webhooks/{webhook_id}/deliveries``: the latest deliveries, newest first.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, HttpUrl
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.api.deps import CurrentUser, ProjectForManager, SessionDep, SettingsDep
from backend.api.types import PathId, RequestModel
from backend.core.outbound import BlockedTarget, check_target
from backend.tables import Project, Webhook, WebhookDelivery
from backend.webhooks.events import EVENTS, emit

router = APIRouter(tags=["webhooks"])

EventName = Literal["image.done", "mask.accepted", "job.succeeded", "job.failed", "model_version.promoted"]
MAX_HOOKS = 20
DELIVERIES_SHOWN = 50


class WebhookIn(RequestModel):
    url: Annotated[HttpUrl, Field(strict=False)]
    events: Annotated[list[EventName], Field(min_length=1, max_length=len(EVENTS))]
    secret: Annotated[str, Field(min_length=16, max_length=200)] | None = None


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    secret: str
    active: bool
    created_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_response: str | None


class DeliveryOut(BaseModel):
    id: int
    event: str
    payload: dict[str, Any]
    status: str
    attempts: int
    response_code: int | None
    response_body: str | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


def _out(hook: Webhook) -> WebhookOut:
    return WebhookOut.model_validate(hook, from_attributes=True)


def _hook(db: Session, project: Project, webhook_id: int) -> Webhook:
    hook = db.get(Webhook, webhook_id)
    if hook is None or hook.project_id != project.id:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"webhook {webhook_id} not found")
    return hook


@router.post("/api/projects/{project_id}/webhooks", status_code=status.HTTP_201_CREATED)
def create_webhook(
    project: ProjectForManager, body: WebhookIn, db: SessionDep, user: CurrentUser, settings: SettingsDep
) -> WebhookOut:
    try:
        check_target(str(body.url), settings.outbound_allowed_networks)
    except BlockedTarget as error:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(error)) from None
    count = len(db.scalars(select(Webhook.id).where(Webhook.project_id == project.id)).all())
    if count >= MAX_HOOKS:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=f"a project has at most {MAX_HOOKS} webhooks")
    hook = Webhook(
        project_id=project.id,
        url=str(body.url),
        events=sorted(set(body.events)),
        secret=body.secret or secrets.token_urlsafe(32),
        created_by=user.id,
    )
    db.add(hook)
    db.commit()
    return _out(hook)


@router.get("/api/projects/{project_id}/webhooks")
def list_webhooks(project: ProjectForManager, db: SessionDep) -> list[WebhookOut]:
    return [_out(h) for h in db.scalars(select(Webhook).where(Webhook.project_id == project.id).order_by(Webhook.id))]


@router.delete("/api/projects/{project_id}/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(project: ProjectForManager, webhook_id: PathId, db: SessionDep) -> None:
    db.delete(_hook(db, project, webhook_id))
    db.commit()


@router.post("/api/projects/{project_id}/webhooks/{webhook_id}/test", status_code=status.HTTP_202_ACCEPTED)
def send_test_event(project: ProjectForManager, webhook_id: PathId, db: SessionDep, user: CurrentUser) -> DeliveryOut:
    hook = _hook(db, project, webhook_id)
    deliveries = emit(db, project.id, "test", {"sent_by": user.username}, webhook_id=hook.id)
    if not deliveries:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=f"webhook {webhook_id} is not active")
    (delivery,) = deliveries
    db.commit()
    db.refresh(delivery)
    return DeliveryOut.model_validate(delivery, from_attributes=True)


@router.get("/api/projects/{project_id}/webhooks/{webhook_id}/deliveries")
def list_deliveries(project: ProjectForManager, webhook_id: PathId, db: SessionDep) -> list[DeliveryOut]:
    hook = _hook(db, project, webhook_id)
    rows = db.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == hook.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(DELIVERIES_SHOWN)
    )
    return [DeliveryOut.model_validate(d, from_attributes=True) for d in rows]
