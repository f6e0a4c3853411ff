"""Jobs: visibility, listing, cancel, the SSE stream, recovery of a job whose worker vanished, starting one
or getting the running one (`start_or_existing`), and the task and queue of every job kind."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from backend.core.db import make_engine, make_session_factory
from backend.jobs import service
from backend.tables import Job, Role
from backend.tables.enums import JobStatus
from backend.worker import celery_app


def _job(db: Session, project_id: int | None, user_id: int | None, **values) -> Job:
    job = service.create_job(db, "embed", project_id, user_id, params={"model_version_id": 1})
    for key, value in values.items():
        setattr(job, key, value)
    db.commit()
    return job


def test_get_and_list_jobs_respect_membership(client, db, project, manager, manager_headers, make_user, login):
    job = _job(db, project.id, manager.id)
    own = client.get(f"/api/jobs/{job.id}", headers=manager_headers)
    assert own.status_code == 200
    assert own.json()["status"] == "queued" and own.json()["progress"] == 0.0 and own.json()["kind"] == "embed"
    assert (own.json()["params"], own.json()["attempts"], own.json()["result"]) == ({"model_version_id": 1}, 0, None)
    outsider = login(make_user(Role.manager))
    assert client.get(f"/api/jobs/{job.id}", headers=outsider).status_code == 404
    assert client.get(f"/api/projects/{project.id}/jobs", headers=outsider).status_code == 404
    assert client.get(f"/api/jobs/{job.id}/events", headers=outsider).status_code == 404
    assert client.get("/api/jobs/999999", headers=manager_headers).status_code == 404
    assert client.get(f"/api/jobs/{job.id}").status_code == 401
    assert [j["id"] for j in client.get(f"/api/projects/{project.id}/jobs", headers=manager_headers).json()] == [job.id]

    system_job = _job(db, None, manager.id)  # no project: its creator and admins only
    assert client.get(f"/api/jobs/{system_job.id}", headers=manager_headers).status_code == 200
    assert client.get(f"/api/jobs/{system_job.id}", headers=outsider).status_code == 404


def test_cancel(client, db, project, manager, manager_headers):
    job = _job(db, project.id, manager.id)
    response = client.post(f"/api/jobs/{job.id}/cancel", headers=manager_headers)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    with pytest.raises(service.JobCancelled):
        service.set_progress(db, job.id, 0.5)


def _read_events(response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


def test_events_stream_progress_until_the_job_ends(client, db, settings, project, manager, manager_headers):
    job = _job(db, project.id, manager.id)

    def work() -> None:  # a "worker" in another thread: claim, two progress steps, success
        with make_session_factory(make_engine(settings.db_url))() as other:
            assert service.claim(other, job.id)
            for progress in (0.25, 0.75):
                time.sleep(0.8)
                service.set_progress(other, job.id, progress, f"{progress:.0%}")
            time.sleep(0.8)
            service.succeed(other, job.id, {"embedded": 4})

    worker = threading.Thread(target=work)
    worker.start()
    # EventSource cannot send headers: a short-lived ticket for this job travels as a query parameter.
    ticket = client.post(f"/api/jobs/{job.id}/events/ticket", headers=manager_headers).json()["ticket"]
    with client.stream("GET", f"/api/jobs/{job.id}/events", params={"ticket": ticket}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _read_events(response)
    worker.join()
    assert events[-1][0] == "end"
    states = [(data["status"], data["progress"]) for name, data in events if name == "job"]
    assert states[0][0] in ("queued", "running") and states[-1] == ("succeeded", 1.0)
    progresses = [p for _, p in states]
    assert progresses == sorted(progresses) and {0.25, 0.75} <= set(progresses)
    assert events[-2][1]["result"] == {"embedded": 4} and events[-2][1]["attempts"] == 1


def test_claim_is_exclusive_and_stale_jobs_are_requeued_then_failed(db, settings, project, manager, monkeypatch):
    celery_app.configure(settings, eager=False)
    sent: list[tuple] = []
    monkeypatch.setattr(celery_app, "enqueue", lambda name, *args, task_id=None: sent.append((name, args)) or task_id)
    job = _job(db, project.id, manager.id)
    assert service.claim(db, job.id)
    assert not service.claim(db, job.id)  # a second delivery while the first runner heartbeats
    assert service.sweep_stale_jobs(db, stale_after=timedelta(seconds=30)) == []

    # The worker dies: its heartbeat stops. The sweep sends the job again...
    job.heartbeat_at = service.now() - timedelta(minutes=5)
    db.commit()
    assert service.sweep_stale_jobs(db, stale_after=timedelta(seconds=30), max_attempts=2) == [(job.id, "requeued")]
    db.refresh(job)
    assert job.status == JobStatus.queued and sent == [("embeddings.embed_images", (job.id,))]
    assert job.params == {"model_version_id": 1} and job.attempts == 1

    # ...the new run dies too: with no attempts left the job fails, never stays running.
    assert service.claim(db, job.id)
    db.refresh(job)
    assert job.attempts == 2
    job.heartbeat_at = service.now() - timedelta(minutes=5)
    db.commit()
    assert service.sweep_stale_jobs(db, stale_after=timedelta(seconds=30), max_attempts=2) == [(job.id, "failed")]
    db.refresh(job)
    assert job.status == JobStatus.failed and "stopped responding" in job.error
    assert not service.claim(db, job.id)


def test_start_or_existing_gives_the_pending_job_instead_of_a_second(db, settings, project, manager, monkeypatch):
    celery_app.configure(settings, eager=False)
    sent: list[tuple] = []
    monkeypatch.setattr(celery_app, "enqueue", lambda name, *args, task_id=None: sent.append((name, args)) or task_id)
    calls: list[int] = []

    def inputs(version: int):
        def make() -> service.JobInputs:
            calls.append(version)
            return service.JobInputs({"model_version_id": version}, f"embedding with {version}")

        return make

    def start(version: int, reuse=None) -> service.Started:
        return service.start_or_existing(db, settings, "embed", project.id, manager.id, inputs(version), reuse)

    first = start(1)
    assert first.created and (first.job.params, first.job.message, first.job.attempts) == (
        {"model_version_id": 1},
        "embedding with 1",
        0,
    )
    assert sent == [("embeddings.embed_images", (first.job.id,))] and first.job.celery_task_id is not None
    again = start(2)  # any pending job of the kind does by default; its inputs are not even asked for
    assert (again.job.id, again.created, calls) == (first.job.id, False, [1])
    other = start(2, reuse=lambda pending: pending.params["model_version_id"] == 2)
    assert other.created and other.job.id != first.job.id and calls == [1, 2]
    assert service.pending_job(db, project.id, "embed").id == other.job.id  # the newest

    for job in (first.job, other.job):
        service.cancel(db, job)
    assert start(3).created  # nothing pending any more
    assert len(sent) == 3


def test_two_simultaneous_starts_make_one_job(db, settings, project, manager, monkeypatch):
    """Both requests check for a pending job before either has stored one; the project lock makes the
    second wait and find the first's job (without it, both inputs ran and two jobs were made)."""
    celery_app.configure(settings, eager=False)
    monkeypatch.setattr(celery_app, "enqueue", lambda name, *args, task_id=None: task_id)
    sessions = make_session_factory(make_engine(settings.db_url))
    both_checking = threading.Barrier(2)
    started: list[service.Started] = []
    errors: list[BaseException] = []

    def slow_inputs() -> service.JobInputs:
        time.sleep(0.5)  # a model version being prepared, say: a wide window between check and insert
        return service.JobInputs({}, "training")

    def request() -> None:
        try:
            with sessions() as session:
                both_checking.wait(timeout=10)
                started.append(
                    service.start_or_existing(session, settings, "train", project.id, manager.id, slow_inputs)
                )
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(s.created for s in started) == [False, True]
    assert len({s.job.id for s in started}) == 1
    assert [j.id for j in service.list_project_jobs(db, project.id)] == [started[0].job.id]


def test_start_or_existing_stores_nothing_when_the_inputs_refuse(db, settings, project, manager):
    def refuse() -> service.JobInputs:
        raise ValueError("not enough masks")

    with pytest.raises(ValueError, match="not enough masks"):
        service.start_or_existing(db, settings, "train", project.id, manager.id, refuse)
    db.rollback()
    assert service.list_project_jobs(db, project.id) == []


def test_every_job_kind_has_a_registered_task_and_every_task_a_queue():
    app = celery_app.app
    app.loader.import_default_modules()
    ours = {name for name in app.tasks if not name.startswith("celery.")}
    assert ours == set(celery_app.TASK_QUEUES)
    assert set(service.TASK_FOR_KIND.values()) <= ours
    assert set(celery_app.TASK_QUEUES.values()) <= set(celery_app.QUEUES)
    for name in ours:  # named by domain: the package the task lives in
        assert app.tasks[name].__module__.split(".")[1] == name.split(".")[0], name
