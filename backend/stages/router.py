"""Stage routes: the gate to the next stage (any member) and the move (the project's managers).

``POST /api/projects/{id}/stage`` with ``{"stage": <the next stage>}`` answers the project, or 409
naming what is missing while the gate does not hold (or when the stage asked for is not the next).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from backend.api.deps import ProjectForManager, ProjectForMember, SessionDep
from backend.projects.schemas import ProjectOut
from backend.projects.service import project_out
from backend.stages import gates, service
from backend.stages.schemas import GateOut, StageMove

router = APIRouter(prefix="/api/projects/{project_id}", tags=["stages"])


@router.get("/gate")
def get_gate(project: ProjectForMember, db: SessionDep) -> GateOut:
    return GateOut.model_validate(gates.evaluate(db, project))


@router.post("/stage")
def move_stage(body: StageMove, project: ProjectForManager, db: SessionDep) -> ProjectOut:
    """Advance the project to its next stage; 409 with what is missing while the gate does not hold."""
    try:
        service.advance_stage(db, project, body.stage)
    except (service.BadStageMove, service.GateClosed) as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return project_out(db, project)
