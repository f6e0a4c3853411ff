"""Celery task `webhooks.deliver`: one POST of one delivery, signed, retried with backoff, logged.

The body is the JSON ``{"id", "event", "created_at", "data"}``. Headers: ``X-DataEngine-Event``,
``X-DataEngine-Delivery`` (the id: a receiver drops a repeat), ``X-DataEngine-Timestamp`` (Unix
seconds) and ``X-DataEngine-Signature: sha256=<hex>``, the HMAC-SHA256 with the hook's secret of
``<timestamp>.<body>``: a receiver recomputes it (`signature`) and refuses an old timestamp, so a
captured request cannot be replayed later.

An answer other than 2xx, a refused connection or no answer within `TIMEOUT_SECONDS` is a failed
attempt: the task retries after 2, 4, 8, 16 s (`MAX_ATTEMPTS` in all) and then marks the delivery
failed. Each attempt records its status and the start of the answer on the delivery and on the hook
(its "last response"). Redirects are not followed: a hook's URL is the one that receives the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from backend.core.config import Settings
from backend.core.outbound import BlockedTarget, outbound_client
from backend.jobs.runner import worker_sessions
from backend.tables import Webhook, WebhookDelivery
from backend.tables.base import utcnow
from backend.worker.celery_app import app, task_settings

TIMEOUT_SECONDS = 5.0
MAX_ATTEMPTS = 5
KEPT_RESPONSE_CHARS = 2000


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def body_of(delivery: WebhookDelivery) -> bytes:
    document = {
        "id": delivery.id,
        "event": delivery.event,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def attempt(hook: Webhook, delivery: WebhookDelivery, settings: Settings) -> tuple[int | None, str]:
    """POST the delivery once; (status code or None, the answer's start or the error). A host that
    resolves to a private address (`backend.core.outbound`) is a failed attempt that says so."""
    body = body_of(delivery)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "dataengine-webhooks",
        "X-DataEngine-Event": delivery.event,
        "X-DataEngine-Delivery": str(delivery.id),
        "X-DataEngine-Timestamp": timestamp,
        "X-DataEngine-Signature": signature(hook.secret, timestamp, body),
    }
    try:
        with outbound_client(settings.outbound_allowed_networks, timeout=TIMEOUT_SECONDS) as client:
            response = client.post(hook.url, content=body, headers=headers)  # redirects not followed
    except (httpx.HTTPError, BlockedTarget) as error:
        return None, f"{type(error).__name__}: {error}"[:KEPT_RESPONSE_CHARS]
    return response.status_code, response.text[:KEPT_RESPONSE_CHARS]


@app.task(name="webhooks.deliver", acks_late=True)
def deliver(delivery_id: int) -> str:
    settings = task_settings()
    sessions = worker_sessions(settings)
    with sessions() as db:
        delivery = db.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status != "pending":
            return "skipped"
        hook = db.get(Webhook, delivery.webhook_id)
        if hook is None or not hook.active:
            delivery.status, delivery.error, delivery.finished_at = "failed", "the hook was removed", utcnow()
            db.commit()
            return "failed"
        code, text = attempt(hook, delivery, settings)
        delivery.attempts += 1
        delivery.response_code = code
        delivery.response_body, delivery.error = (text, None) if code is not None else (None, text)
        hook.last_attempt_at, hook.last_status_code, hook.last_response = utcnow(), code, text
        ok = code is not None and 200 <= code < 300
        if ok or delivery.attempts >= MAX_ATTEMPTS:
            delivery.status, delivery.finished_at = ("succeeded" if ok else "failed"), utcnow()
        db.commit()
        if delivery.status == "pending":  # the next attempt, later, as a task of its own (eager: at once)
            deliver.apply_async(args=[delivery_id], countdown=2**delivery.attempts)
        return delivery.status
