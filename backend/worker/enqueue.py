"""Enqueue after commit: a task is sent only once the rows it reads are committed.

Sending inside the transaction races a fast worker (it would look for a job row that does not
exist yet) and sends tasks for work that a rollback then cancels. `enqueue_after_commit` holds
the send until the session commits and forgets it if the session rolls back.
"""

from __future__ import annotations

import uuid

from sqlalchemy import event
from sqlalchemy.orm import Session

from backend.worker import celery_app


def enqueue_after_commit(session: Session, task_name: str, *args: object) -> str:
    """Send `task_name(*args)` when `session` next commits; return the task id it will have.

    The id is chosen now so the caller can store it (e.g. in `jobs.celery_task_id`) in the same
    transaction.
    """
    task_id = str(uuid.uuid4())

    def send(_: Session) -> None:
        celery_app.enqueue(task_name, *args, task_id=task_id)

    def forget(_: Session, previous_transaction: object) -> None:
        if event.contains(session, "after_commit", send):
            event.remove(session, "after_commit", send)

    event.listen(session, "after_commit", send, once=True)
    event.listen(session, "after_soft_rollback", forget, once=True)
    return task_id
