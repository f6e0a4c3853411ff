"""Stage gates: what must hold before a project moves to its next stage, as data, measured now.

The stages run in `ORDER`. The gates are `DEFAULT_GATES` (one entry per target stage, a list of
conditions). Each threshold is a project setting, ``gates.<target stage>.<condition key>`` (e.g.
``{"gates": {"semi_automatic": {"min_masks": 50}}}``), typed, bounded and defaulted by
`backend.projects.settings.GateSettings`. Each condition kind is one small SQL count (masks and images
come from the `mask_totals` / `image_stats` rollups); the dashboard shows every condition with its
current value, and the move (`backend.stages.service.advance_stage`) refuses while one does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.projects.settings import project_settings
from backend.tables import (
    DetectorVersion,
    ImageStat,
    ImageStatus,
    MaskTotal,
    ModelOrigin,
    ModelStatus,
    ModelVersion,
    Project,
    Stage,
)

ORDER = [Stage.assisted_manual, Stage.semi_automatic, Stage.fully_automatic, Stage.done]


@dataclass(frozen=True)
class Condition:
    """One requirement: `kind` names the measurement, `key` the settings name of its threshold."""

    key: str
    kind: str  # masks_in_stage | done_share | trained_models | ready_detectors
    stage: Stage | None  # the stage the measurement looks at (None: not stage-bound)
    label: str


# Target stage -> what must hold to enter it; the thresholds (and their defaults) are project settings.
DEFAULT_GATES: dict[Stage, list[Condition]] = {
    Stage.semi_automatic: [
        Condition("min_masks", "masks_in_stage", Stage.assisted_manual, "masks annotated in the assisted-manual stage"),
        Condition(
            "min_done_share", "done_share", Stage.assisted_manual, "share of images done in the assisted-manual stage"
        ),
        Condition("min_trained_models", "trained_models", None, "ready model versions retrained on this project"),
        Condition(
            "min_detectors",
            "ready_detectors",
            None,
            "ready detector versions of this project (train one: Train detector)",
        ),
    ],
    Stage.fully_automatic: [
        Condition("min_masks", "masks_in_stage", Stage.semi_automatic, "masks annotated in the semi-automatic stage"),
        Condition("min_trained_models", "trained_models", None, "ready model versions retrained on this project"),
    ],
    Stage.done: [
        Condition(
            "min_done_share", "done_share", Stage.fully_automatic, "share of images done in the fully automatic stage"
        ),
    ],
}


@dataclass(frozen=True)
class ConditionState:
    key: str
    label: str
    required: float
    actual: float
    holds: bool


@dataclass(frozen=True)
class Gate:
    from_stage: Stage
    to_stage: Stage | None  # None: the project is done, there is no next stage
    conditions: list[ConditionState]

    @property
    def holds(self) -> bool:
        return self.to_stage is not None and all(c.holds for c in self.conditions)


def next_stage(stage: Stage) -> Stage | None:
    i = ORDER.index(stage)
    return ORDER[i + 1] if i + 1 < len(ORDER) else None


def threshold(project: Project, to_stage: Stage, condition: Condition) -> float:
    """The project's setting ``gates.<to_stage>.<condition key>`` (its default unless a manager set it)."""
    return float(getattr(getattr(project_settings(project).gates, to_stage.value), condition.key))


def measure(db: Session, project: Project, condition: Condition) -> float:
    """The current value of `condition` in `project` (compared with its threshold by `evaluate`)."""
    if condition.kind == "masks_in_stage":
        assert condition.stage is not None
        return float(
            db.scalar(
                select(func.sum(MaskTotal.masks)).where(
                    MaskTotal.project_id == project.id, MaskTotal.stage == condition.stage.value
                )
            )
            or 0
        )
    if condition.kind == "done_share":
        assert condition.stage is not None
        rows = db.execute(
            select(
                ImageStat.status,
                func.sum(ImageStat.images),
                func.sum(getattr(ImageStat, f"done_{condition.stage.value}")),
            )
            .where(ImageStat.project_id == project.id)
            .group_by(ImageStat.status)
        ).all()
        total = sum(int(n) for _, n, _ in rows)
        if total == 0:
            return 0.0
        done = sum(int(d) for _, _, d in rows)
        if project.stage == condition.stage:  # the current stage: its status says it, stage_done may lag
            done += sum(int(n) - int(d) for status, n, d in rows if status == ImageStatus.done.value)
        return done / total
    if condition.kind == "trained_models":
        return float(
            db.scalar(
                select(func.count())
                .select_from(ModelVersion)
                .where(
                    ModelVersion.project_id == project.id,
                    ModelVersion.origin == ModelOrigin.trained,
                    ModelVersion.status == ModelStatus.ready,
                )
            )
            or 0
        )
    if condition.kind == "ready_detectors":
        return float(
            db.scalar(
                select(func.count())
                .select_from(DetectorVersion)
                .where(DetectorVersion.project_id == project.id, DetectorVersion.status == ModelStatus.ready)
            )
            or 0
        )
    raise ValueError(f"unknown gate condition kind {condition.kind!r}")


def evaluate(db: Session, project: Project) -> Gate:
    """The gate between the project's stage and the next one, every condition measured now."""
    to_stage = next_stage(project.stage)
    if to_stage is None:
        return Gate(project.stage, None, [])
    states = []
    for condition in DEFAULT_GATES[to_stage]:
        required = threshold(project, to_stage, condition)
        actual = measure(db, project, condition)
        states.append(ConditionState(condition.key, condition.label, required, actual, actual >= required))
    return Gate(project.stage, to_stage, states)
