"""What the stage endpoints take and return (the gate is also part of the dashboard's answer)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from backend.api.types import RequestModel, lax
from backend.tables import Stage


class GateCondition(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str
    label: str
    required: float
    actual: float
    holds: bool


class GateOut(BaseModel):
    """The gate between the project's stage and the next (`to_stage` None: the project is done);
    built from `backend.stages.gates.Gate` (``GateOut.model_validate(gates.evaluate(db, project))``)."""

    model_config = ConfigDict(from_attributes=True)

    from_stage: Stage
    to_stage: Stage | None
    holds: bool
    conditions: list[GateCondition]


class StageMove(RequestModel):
    stage: Stage = lax()
