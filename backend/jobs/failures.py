"""Images a job could not process: recorded with the reason, and the job goes on with the others.

A job over a project's images (embed, auto-annotate, detector proposals) must not die on one bad
image (an unreadable file, a shape the model refuses, an image deleted meanwhile): it calls
`FailedImages.add` for it and continues. The job's result then carries ``failed`` (how many) and
``failed_images`` (the first `MAX_LISTED`, each ``{image_id, error}``) and its message says how many
failed. Only when every image it tried failed is the job itself failed, with the first reason: then
the cause is the job's, not an image's (the model server is down, the weights are gone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_LISTED = 100  # a result stays small however many images fail
MAX_ERROR_CHARS = 500


def describe(error: BaseException) -> str:
    """The message a person reads: a ValueError's own text, otherwise prefixed by the error's type."""
    text = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
    return text[:MAX_ERROR_CHARS]


@dataclass
class FailedImages:
    count: int = 0
    listed: list[dict[str, Any]] = field(default_factory=list)

    def add(self, image_id: int, error: BaseException) -> None:
        self.count += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append({"image_id": image_id, "error": describe(error)})

    def suffix(self) -> str:
        """For a progress message: ", 2 failed" (or nothing)."""
        return f", {self.count} failed" if self.count else ""

    def result(self) -> dict[str, Any]:
        return {"failed": self.count, "failed_images": self.listed}

    def raise_if_all_failed(self, succeeded: int) -> None:
        """Fail the job when images failed and none succeeded (see the module docstring)."""
        if self.count and not succeeded:
            first = self.listed[0]
            raise ValueError(f"all {self.count} images failed; image {first['image_id']}: {first['error']}")
