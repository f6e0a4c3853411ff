"""A project's settings: ONE schema for every key the product reads, and the only way to read them.

`projects.settings` (JSON) holds only what a manager set (`stored_form`), so a default changed here
applies to every project that did not choose otherwise. The API validates settings as the request
body of create and of `PATCH /api/projects/{id}` (422 naming the key; a PATCH merges what it sets into
what was set, `merge`); the product reads them only through `project_settings(project)`, typed and
bounded, so no reader has to check a value again.

Rows stored before this schema existed may hold anything (e.g. ``{"gates": "x"}``). For them the
accessor drops each invalid key, so its default applies (and logs a warning), instead of failing every
page of the project; the next PATCH stores the cleaned settings.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from pydantic import Field, ValidationError

from backend.api.types import RequestModel
from backend.retraining.schemas import RetrainParams
from backend.selection.settings import SelectionSettings
from backend.tables import Project

logger = logging.getLogger(__name__)

MAX_COUNT = 1_000_000_000  # masks, images: far above any project, below any integer overflow


class _Settings(RequestModel):
    """Strict as every request body: "10" is not a number of masks, 1 is not true, and an unknown key is
    a typo, not a setting."""


class SemiAutomaticGate(_Settings):
    """Thresholds to enter the semi-automatic stage (conditions in backend/stages/gates.py)."""

    min_masks: int = Field(1000, ge=0, le=MAX_COUNT, description="masks annotated in the assisted-manual stage")
    min_done_share: float = Field(0.0, ge=0, le=1, description="share of images done in the assisted-manual stage")
    min_trained_models: int = Field(0, ge=0, le=1000, description="ready model versions retrained on the project")
    min_detectors: int = Field(1, ge=0, le=1000, description="ready detector versions of the project")


class FullyAutomaticGate(_Settings):
    """Thresholds to enter the fully automatic stage."""

    min_masks: int = Field(1000, ge=0, le=MAX_COUNT, description="masks annotated in the semi-automatic stage")
    min_trained_models: int = Field(0, ge=0, le=1000, description="ready model versions retrained on the project")


class DoneGate(_Settings):
    """Thresholds to mark the project done."""

    min_done_share: float = Field(1.0, ge=0, le=1, description="share of images done in the fully automatic stage")


class GateSettings(_Settings):
    """Per target stage, the thresholds of its gate (the field names are the stage values)."""

    semi_automatic: SemiAutomaticGate = Field(default_factory=SemiAutomaticGate)
    fully_automatic: FullyAutomaticGate = Field(default_factory=FullyAutomaticGate)
    done: DoneGate = Field(default_factory=DoneGate)


class ProjectSettings(_Settings):
    """Every project setting, its default and its bounds."""

    review_fraction: float = Field(
        0.02, ge=0, le=1, description="share of automatic masks sampled into the review queue"
    )
    review_seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of that sample (reproducible choice)")
    duplicate_iou: float = Field(
        0.9,
        gt=0,
        le=1,
        description="detector pre-fill and auto-annotation skip a mask with this IoU or more with a live mask of its image",
    )
    retrain_every_masks: int = Field(
        0, ge=0, le=MAX_COUNT, description="Celery beat starts a retraining round after this many new masks; 0 = off"
    )
    auto_promote: bool = Field(
        False, description="a finished round becomes the active version if it beats it on held-out images"
    )
    retrain_params: RetrainParams = Field(
        default_factory=RetrainParams, description="the parameters of the rounds beat starts"
    )
    gates: GateSettings = Field(default_factory=GateSettings, description="stage gate thresholds")
    selection: SelectionSettings = Field(
        default_factory=SelectionSettings, description="which image claim next gives (backend/selection/)"
    )


def project_settings(project: Project) -> ProjectSettings:
    """The project's settings, valid by construction (see the module docstring for stored invalid keys)."""
    stored = project.settings if isinstance(project.settings, dict) else {}
    data = copy.deepcopy(stored)
    while True:
        try:
            return ProjectSettings.model_validate(data)
        except ValidationError as error:
            logger.warning("project %s: invalid stored settings ignored (defaults apply): %s", project.id, error)
            removed = [_drop(data, tuple(e["loc"])) for e in error.errors()]
            if not any(removed):
                return ProjectSettings()


def _drop(data: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    """Remove the key that `loc` (a validation error's location) points into; True if one was removed.

    Each round of `project_settings` removes at least one key of a finite dict, so it ends."""
    node: Any = data
    for depth, key in enumerate(loc):
        if not isinstance(node, dict) or key not in node:
            return False
        if depth == len(loc) - 1 or not isinstance(node[key], dict):
            del node[key]
            return True
        node = node[key]
    return False


def stored_form(settings: ProjectSettings) -> dict[str, Any]:
    """What is stored in `projects.settings`: only the keys that were set."""
    return settings.model_dump(mode="json", exclude_unset=True)


def merge(current: ProjectSettings, patch: ProjectSettings) -> ProjectSettings:
    """`current` with every key set in `patch` replaced, objects merged key by key (what a PATCH does)."""
    return ProjectSettings.model_validate(_merged(stored_form(current), stored_form(patch)))


def _merged(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(target)
    for key, value in patch.items():
        current = out.get(key)
        out[key] = _merged(current, value) if isinstance(value, dict) and isinstance(current, dict) else value
    return out
