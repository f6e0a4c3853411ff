"""Emitting an event: one delivery row per subscribed hook, sent once the caller's transaction commits.

`emit` is called inside the transaction that makes the event true (the image marked done, the review
stored, the job finished, the version promoted) and only adds rows: if that transaction rolls back,
no event was sent for something that did not happen. After the commit, the session's ``after_commit``
hook queues one `backend.webhooks.delivery` task per new delivery on the ``webhooks`` queue, so a
slow or dead receiver costs the engine nothing but that queue's worker time.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from backend.tables import Webhook, WebhookDelivery

EVENTS = ("image.done", "mask.accepted", "job.succeeded", "job.failed", "model_version.promoted", "test")
_PENDING = "webhook_deliveries"  # key in Session.info: ids to queue after the commit


def emit(
    db: Session, project_id: int | None, name: str, data: dict[str, Any], webhook_id: int | None = None
) -> list[WebhookDelivery]:
    """Add a delivery of event `name` with `data` for every active hook of the project subscribed to
    it (or for hook `webhook_id` alone, whatever it subscribes to: the test event)."""
    if project_id is None:
        return []
    assert name in EVENTS, name
    query = select(Webhook).where(Webhook.project_id == project_id, Webhook.active.is_(True))
    if webhook_id is not None:
        query = query.where(Webhook.id == webhook_id)
    deliveries = [
        WebhookDelivery(webhook_id=hook.id, event=name, payload={"project_id": project_id, **data})
        for hook in db.scalars(query)
        if webhook_id is not None or name in hook.events
    ]
    if deliveries:
        db.add_all(deliveries)
        db.flush()
        db.info.setdefault(_PENDING, []).extend(d.id for d in deliveries)
    return deliveries


@event.listens_for(Session, "after_commit")
def _queue_after_commit(db: Session) -> None:
    ids = db.info.pop(_PENDING, None)
    if ids:
        from backend.worker.celery_app import enqueue  # the worker module imports the task modules

        for delivery_id in ids:
            enqueue("webhooks.deliver", delivery_id)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(db: Session) -> None:
    db.info.pop(_PENDING, None)
