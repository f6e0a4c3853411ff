"""Webhooks against a receiver on 127.0.0.1 started by the test: signatures, retry after a 500, the
delivery log, events fired by the engine, and a receiver that hangs (the engine does not wait)."""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from backend.tables import WebhookDelivery
from backend.webhooks import delivery as delivery_module
from backend.webhooks.delivery import signature
from backend.worker import celery_app
from tests.backend.jobs_helpers import upload


class Receiver:
    """An HTTP server answering POSTs with the next of `statuses` (200 when none is left), or after
    `hang` seconds; it keeps every request's headers and body."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.hang = 0.0
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                if receiver.hang:
                    time.sleep(receiver.hang)
                code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"thanks" if code == 200 else b"try later")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()


def _hook(client, headers, project_id: int, url: str, events: list[str]) -> dict:
    response = client.post(f"/api/projects/{project_id}/webhooks", json={"url": url, "events": events}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_signed_test_event_and_the_delivery_log(client, project, manager_headers, receiver, eager):
    hook = _hook(client, manager_headers, project.id, receiver.url, ["job.succeeded"])
    assert len(hook["secret"]) >= 32
    sent = client.post(f"/api/projects/{project.id}/webhooks/{hook['id']}/test", headers=manager_headers)
    assert sent.status_code == 202, sent.text
    ((headers, body),) = receiver.requests
    assert headers["X-DataEngine-Event"] == "test" and headers["X-DataEngine-Delivery"] == str(sent.json()["id"])
    expected = signature(hook["secret"], headers["X-DataEngine-Timestamp"], body)
    assert hmac.compare_digest(headers["X-DataEngine-Signature"], expected)
    assert not hmac.compare_digest(
        headers["X-DataEngine-Signature"], signature("wrong" * 8, headers["X-DataEngine-Timestamp"], body)
    )
    document = json.loads(body)
    assert document["event"] == "test" and document["data"]["project_id"] == project.id
    log = client.get(f"/api/projects/{project.id}/webhooks/{hook['id']}/deliveries", headers=manager_headers).json()
    assert [(d["status"], d["attempts"], d["response_code"], d["response_body"]) for d in log] == [
        ("succeeded", 1, 200, "thanks")
    ]
    (listed,) = client.get(f"/api/projects/{project.id}/webhooks", headers=manager_headers).json()
    assert (listed["last_status_code"], listed["last_response"]) == (200, "thanks")


def test_retry_after_a_500(client, project, manager_headers, receiver, eager):
    receiver.statuses = [500, 503]
    hook = _hook(client, manager_headers, project.id, receiver.url, ["job.succeeded"])
    client.post(f"/api/projects/{project.id}/webhooks/{hook['id']}/test", headers=manager_headers)
    assert len(receiver.requests) == 3
    assert len({h["X-DataEngine-Delivery"] for h, _ in receiver.requests}) == 1  # one delivery, three attempts
    (log,) = client.get(f"/api/projects/{project.id}/webhooks/{hook['id']}/deliveries", headers=manager_headers).json()
    assert (log["status"], log["attempts"], log["response_code"]) == ("succeeded", 3, 200)


def test_engine_events_reach_subscribed_hooks_only(client, db, project, manager_headers, receiver, eager, data_root):
    jobs_hook = _hook(client, manager_headers, project.id, receiver.url, ["job.succeeded", "job.failed"])
    images_hook = _hook(client, manager_headers, project.id, receiver.url + "/images", ["image.done"])
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    started = client.post(f"/api/projects/{project.id}/exports", json={"format": "coco"}, headers=manager_headers)
    assert started.status_code == 202
    events = [json.loads(body) for _, body in receiver.requests]
    assert [(e["event"], e["data"]["job_id"], e["data"]["kind"]) for e in events] == [
        ("job.succeeded", started.json()["id"], "export")
    ]
    client.post(f"/api/images/{image_id}/claim", headers=manager_headers)
    done = client.post(f"/api/images/{image_id}/done", headers=manager_headers)
    assert done.status_code == 200, done.text
    assert json.loads(receiver.requests[-1][1])["event"] == "image.done"
    assert json.loads(receiver.requests[-1][1])["data"]["image_id"] == image_id
    db.expire_all()
    per_hook = {
        hook_id: [d.event for d in db.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id))]
        for hook_id in (jobs_hook["id"], images_hook["id"])
    }
    assert per_hook == {jobs_hook["id"]: ["job.succeeded"], images_hook["id"]: ["image.done"]}


def test_a_hanging_receiver_does_not_block_the_engine(
    client, db, project, manager_headers, receiver, monkeypatch, settings
):
    receiver.hang = 10.0
    monkeypatch.setattr(delivery_module, "TIMEOUT_SECONDS", 0.3)
    hook = _hook(client, manager_headers, project.id, receiver.url, ["job.succeeded"])
    start = time.monotonic()
    sent = client.post(f"/api/projects/{project.id}/webhooks/{hook['id']}/test", headers=manager_headers)
    assert sent.status_code == 202 and time.monotonic() - start < 5.0  # queued (the broker), not sent by the request
    assert sent.json()["status"] == "pending"
    # The worker's side: each attempt gives up after the timeout; the retries run at once in eager mode.
    celery_app.configure(settings, eager=True)
    try:
        start = time.monotonic()
        outcome = delivery_module.deliver.apply(args=[sent.json()["id"]]).get(propagate=False)
        elapsed = time.monotonic() - start
    finally:
        celery_app.configure(settings, eager=False)
    assert elapsed < delivery_module.MAX_ATTEMPTS * (0.3 + 0.5)
    db.expire_all()
    log = db.get(WebhookDelivery, sent.json()["id"])
    assert (log.status, log.attempts, log.response_code) == ("failed", delivery_module.MAX_ATTEMPTS, None), outcome
    assert "Timeout" in log.error


def test_webhook_input_is_bounded(client, project, manager_headers):
    url = f"/api/projects/{project.id}/webhooks"
    for body in (
        {"url": "not a url", "events": ["job.succeeded"]},
        {"url": "ftp://127.0.0.1/x", "events": ["job.succeeded"]},
        {"url": "http://127.0.0.1/x", "events": ["everything"]},
        {"url": "http://127.0.0.1/x", "events": []},
        {"url": "http://127.0.0.1/x", "events": ["job.failed"], "secret": "short"},
    ):
        assert client.post(url, json=body, headers=manager_headers).status_code == 422, body
    assert client.delete(f"{url}/999999", headers=manager_headers).status_code == 404
