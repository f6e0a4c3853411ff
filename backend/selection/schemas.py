from __future__ import annotations

from pydantic import BaseModel

from backend.selection.settings import Strategy


class UpcomingImage(BaseModel):
    """One image in the order claim next follows (the first is what the next claim gets)."""

    image_id: int
    file_name: str
    uncertainty: float | None  # None: not scored yet (it comes after every scored image)
    near_duplicate_of: int | None


class SelectionOut(BaseModel):
    """What the dashboard shows of the project's selection: the strategy, the scores' distribution and
    the next images."""

    strategy: Strategy
    uncertainty_histogram: list[int]  # scored images per tenth of the uncertainty range 0..1
    unscored: int  # images without scores (not embedded, or the score job has not run since)
    near_duplicates: int  # images flagged as near duplicates of an earlier one
    upcoming: list[UpcomingImage]
