"""The stage move: the one place a project's stage changes.

A project moves only to its next stage (`gates.ORDER`), and only while that stage's gate holds. Moving
on resets every image's status to ``new`` and drops the locks: statuses are per current stage (the
annotators' queue starts again), while what was finished in earlier stages stays in
``images.stage_done``.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from backend.stages import gates
from backend.tables import Image, ImageStatus, Project, Stage


class GateClosed(Exception):
    """The next stage's gate does not hold (the message lists what is missing)."""


class BadStageMove(ValueError):
    """The requested stage is not the project's next stage."""


def advance_stage(db: Session, project: Project, to_stage: Stage) -> Project:
    """Move `project` to `to_stage` (its next stage) if the gate holds; reset image statuses and locks.

    Committed. Raises:
        BadStageMove: `to_stage` is not the next stage.
        GateClosed: a condition does not hold.
    """
    expected = gates.next_stage(project.stage)
    if to_stage != expected:
        raise BadStageMove(
            f"project is in stage {project.stage.value}; the next stage is "
            f"{expected.value if expected else 'none (done)'}, not {to_stage.value}"
        )
    missing = [c for c in gates.evaluate(db, project).conditions if not c.holds]
    if missing:
        raise GateClosed(
            f"gate to {to_stage.value} does not hold: "
            + "; ".join(f"{c.label}: {_fmt(c.actual)} < {_fmt(c.required)}" for c in missing)
        )
    db.execute(
        update(Image)
        .where(Image.project_id == project.id)
        .values(status=ImageStatus.new, assignee_id=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    project.stage = to_stage
    db.commit()
    return project


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.3g}"
