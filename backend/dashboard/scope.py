"""Whose figures a dashboard request asks for: a project's, or one annotator's within it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import ColumnElement

from backend.tables import Mask


@dataclass(frozen=True)
class Scope:
    project_id: int
    author_id: int | None = None  # None: the whole project

    @property
    def name(self) -> Literal["project", "me"]:
        return "project" if self.author_id is None else "me"


def live_masks(scope: Scope) -> list[ColumnElement[bool]]:
    """WHERE clauses of the scope's masks that still exist (soft-deleted ones excluded)."""
    where = [Mask.project_id == scope.project_id, Mask.deleted_at.is_(None)]
    if scope.author_id is not None:
        where.append(Mask.author_id == scope.author_id)
    return where
