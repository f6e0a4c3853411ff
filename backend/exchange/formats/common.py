"""What every format's exporter is given: the options, and where it reports what a mask kept."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from backend.exchange.archive import Archive
    from backend.exchange.source import ExportImage

CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}
DEFAULT_TOLERANCE = (
    0.5  # pixels: polygons keep IoU >= 0.99 on real object masks (tests/backend/test_exchange_formats.py)
)


@dataclass(frozen=True)
class ExportOptions:
    polygon_tolerance: float = DEFAULT_TOLERANCE  # Douglas-Peucker tolerance of polygon formats, in pixels


@dataclass
class Fidelity:
    """The IoU each exported mask keeps to the stored one, for formats that cannot hold it exactly."""

    measure: str = ""
    masks: dict[int, float] = field(default_factory=dict)

    def record(self, measure: str, mask_id: int, iou: float) -> None:
        self.measure = measure
        self.masks[mask_id] = round(iou, 6)

    def summary(self) -> dict[str, Any] | None:
        """For a job's result: the measure, min/mean and the IoU per mask id; None if exact."""
        if not self.masks:
            return None
        values = list(self.masks.values())
        return {
            "measure": self.measure,
            "masks": len(values),
            "min_iou": min(values),
            "mean_iou": round(sum(values) / len(values), 6),
            "below_0_999": sum(v < 0.999 for v in values),
            "iou": {str(k): v for k, v in self.masks.items()},
        }


class Exporter(Protocol):
    def __call__(
        self, archive: Archive, images: Iterable[ExportImage], options: ExportOptions, fidelity: Fidelity
    ) -> Iterator[None]:
        """Write the images' members to `archive`, yielding once per image."""
        ...
