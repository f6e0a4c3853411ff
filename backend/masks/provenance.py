"""How a mask came to be: the JSON of `masks.provenance`, one constructor per way a mask is made.

Every provenance is ``{"origin": ..., ...}``. `origin` is finer than the mask's `source` (a review
fix and an annotated mask are both source manual; an imported mask keeps the source its file
names), and the rest says what a later reader needs to trust or reproduce the mask: the clicks of
an annotator, the detector and SAM versions of a pre-fill, the model version and job (whose
``params`` are the generator's) of an auto mask, the file an imported mask came from. Migration
0010 translated the rows written before into these shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ORIGINS = ("annotated", "review_fix", "detector", "auto", "imported")


def annotated(prompts: Mapping[str, Any] | None) -> dict[str, Any]:
    """An annotator's mask; `prompts` are the clicks/box/strokes the annotate page sent, if any."""
    return {"origin": "annotated"} if prompts is None else {"origin": "annotated", "prompts": dict(prompts)}


def review_fix(reviewed_mask_id: int) -> dict[str, Any]:
    """A reviewer's correction of the auto mask `reviewed_mask_id` (also its ``parent_mask_id``)."""
    return {"origin": "review_fix", "review_of": reviewed_mask_id}


def detector(
    detector_version_id: int, model_version_id: int | None, box: Sequence[float], score: float
) -> dict[str, Any]:
    """A pre-fill: the detector's box [x0, y0, x1, y1] (image pixels) and score, made a mask by SAM
    version `model_version_id`."""
    return {
        "origin": "detector",
        "detector_version_id": detector_version_id,
        "model_version_id": model_version_id,
        "box": [float(v) for v in box],
        "detector_score": float(score),
    }


def auto(run: Mapping[str, Any]) -> dict[str, Any]:
    """An automatic generator's mask; `run` names the weights and the job, e.g.
    ``{"model_version_id": 3, "job_id": 12}`` (the job keeps the generator's parameters)."""
    return {"origin": "auto", **run}


def imported(file_format: str, **details: Any) -> dict[str, Any]:
    """A mask read from another tool's file: its format (``coco``, ``yolo``, ...) and what identifies
    it there (e.g. ``annotation_id``)."""
    return {"origin": "imported", "format": file_format, **details}


def prompts_of(provenance: Mapping[str, Any]) -> dict[str, Any] | None:
    """The annotator's prompts of an annotated mask; None for every other mask."""
    prompts = provenance.get("prompts") if provenance.get("origin") == "annotated" else None
    return dict(prompts) if prompts is not None else None
