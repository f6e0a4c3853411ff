"""Dashboard rollups of `masks` and `images` (small tables), kept exact by database triggers in the same transaction as every mask write.

Why rollups: with a million masks, counting, summing and ranking the masks on every dashboard request
walks the whole project's index several times (seconds per request). These tables hold the
same figures pre-aggregated, so a request reads thousands of rows instead of millions, and as many
at a billion masks: no rollup has a row per mask (the largest have one per image or per hour shown).

Why triggers (migrations 0004 and 0012, `backend/dashboard/rollups.py` has the SQL): masks are written by ORM
flushes (annotation saves, auto-annotation, COCO import), by Core `update(Mask)` statements (the review
flow's soft deletes) and by bulk SQL (the benchmark's load); a trigger sees all of them, with the
old and new rows, inside the writing transaction. `rebuild_rollups` recomputes them from `masks` (after a
load that bypassed the triggers, or to check them).

`author_key` is `masks.author_id`, or 0 for masks without an author (auto, detector), so it can be part
of a primary key. A mask contributes to `prefill_*` whether or not it is deleted (deleting a
pre-filled mask IS its outcome); every other figure counts live masks only (`deleted_at IS NULL`).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.tables.base import Base
from backend.tables.enums import Stage

# Width of one `mask_seconds.bucket`: 1/SECONDS_BUCKETS_PER_SECOND s. A power of two, so that
# floor(seconds * 4) == b  <=>  b / 4 <= seconds < (b + 1) / 4 holds exactly in binary floating point.
SECONDS_BUCKETS_PER_SECOND = 4
# A review counts as within the threshold (`review_totals.within`) when IoU(auto mask, mask after review) > this.
REVIEW_IOU_THRESHOLD = 0.9
# Stages with an `image_stats.done_<stage>` column (a new Stage needs a migration adding its column).
DONE_STAGES = ("assisted_manual", "semi_automatic", "fully_automatic", "done")
assert DONE_STAGES == tuple(s.value for s in Stage), "image_stats needs a done_<stage> column per stage"


class _MaskSums:
    """The summed figures of a group of masks (`mask_totals`)."""

    masks: Mapped[int] = mapped_column(BigInteger)  # live masks
    timed: Mapped[int] = mapped_column(BigInteger)  # live masks with seconds_spent
    seconds: Mapped[float] = mapped_column(Float)  # sum of their seconds_spent
    clicked: Mapped[int] = mapped_column(BigInteger)  # live masks with clicks
    clicks: Mapped[int] = mapped_column(BigInteger)  # sum of their clicks
    prefill_kept: Mapped[int] = mapped_column(BigInteger)  # masks (deleted or not) by prefill_outcome
    prefill_corrected: Mapped[int] = mapped_column(BigInteger)
    prefill_deleted: Mapped[int] = mapped_column(BigInteger)


class MaskTotal(_MaskSums, Base):
    """All-time figures per project, stage, source and author: the summary, the gates, the annotator table
    (a few hundred rows per project, whatever its size)."""

    __tablename__ = "mask_totals"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    author_key: Mapped[int] = mapped_column(primary_key=True)  # masks.author_id, 0 = none


class _TimelineSums:
    """What the timeline shows of a group of masks (live ones). The columns default to 0 because two
    rollups write `timeline_hours/days`: these sums from `masks`, `annotators` from the author timelines."""

    masks: Mapped[int] = mapped_column(BigInteger, server_default="0")
    manual_masks: Mapped[int] = mapped_column(BigInteger, server_default="0")  # source manual
    timed: Mapped[int] = mapped_column(BigInteger, server_default="0")  # with seconds_spent
    seconds: Mapped[float] = mapped_column(Float, server_default="0")  # sum of their seconds_spent


class TimelineHour(_TimelineSums, Base):
    """The project's masks per UTC hour of creation: the timeline reads one row per hour shown."""

    __tablename__ = "timeline_hours"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    hour: Mapped[str] = mapped_column(String(19), primary_key=True)  # "YYYY-MM-DDTHH:00:00" (UTC)
    annotators: Mapped[int] = mapped_column(BigInteger, server_default="0")  # authors with a live mask in it


class TimelineDay(_TimelineSums, Base):
    """The same per UTC day (distinct annotators per day are not a sum of the hours', hence its own table)."""

    __tablename__ = "timeline_days"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[str] = mapped_column(String(19), primary_key=True)  # "YYYY-MM-DDT00:00:00" (UTC)
    annotators: Mapped[int] = mapped_column(BigInteger, server_default="0")


class TimelineAuthorHour(_TimelineSums, Base):
    """Per author and hour: one annotator's timeline, and (rows with masks) the hour's `annotators`."""

    __tablename__ = "timeline_author_hours"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    author_key: Mapped[int] = mapped_column(primary_key=True)  # masks.author_id, 0 = none
    hour: Mapped[str] = mapped_column(String(19), primary_key=True)


class TimelineAuthorDay(_TimelineSums, Base):
    """Per author and day, as `timeline_author_hours`."""

    __tablename__ = "timeline_author_days"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    author_key: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[str] = mapped_column(String(19), primary_key=True)


class MaskSecondsBucket(Base):
    """How many live timed masks of a project and author took seconds_spent in [bucket/4, (bucket+1)/4).

    The percentiles find the bucket holding the wanted rank here, then read the exact value from
    `mask_seconds_values` within that bucket (and the next, for the rank after it).
    """

    __tablename__ = "mask_seconds"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    author_key: Mapped[int] = mapped_column(primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # floor(seconds_spent * 4)
    masks: Mapped[int] = mapped_column(BigInteger)


class MaskSecondsValue(Base):
    """How many live masks of a project and author took exactly `seconds` (seconds_spent): the percentiles read
    the values of one or two quarter-second buckets here, as many rows as distinct timings there (a few
    hundred at millisecond resolution), however many masks share them."""

    __tablename__ = "mask_seconds_values"
    __table_args__ = (Index("ix_mask_seconds_values_project_seconds", "project_id", "seconds"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    author_key: Mapped[int] = mapped_column(primary_key=True)
    seconds: Mapped[float] = mapped_column(Float, primary_key=True)
    masks: Mapped[int] = mapped_column(BigInteger)


class ImageMaskHistogram(Base):
    """How many images of a project have exactly `masks` live masks (> 0), a rollup of `image_mask_totals`: the
    masks-per-image histogram reads one row per distinct count (~ the largest count), not one per image."""

    __tablename__ = "image_mask_histogram"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    masks: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    images: Mapped[int] = mapped_column(BigInteger)


class AuthorMaskHistogram(Base):
    """The same per author (a rollup of `image_mask_counts`): one annotator's masks-per-image histogram."""

    __tablename__ = "author_mask_histogram"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    author_key: Mapped[int] = mapped_column(primary_key=True)
    masks: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    images: Mapped[int] = mapped_column(BigInteger)


class ImageMaskTotal(Base):
    """Live masks per image: the project's masks-per-image distribution without touching `masks`."""

    __tablename__ = "image_mask_totals"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    masks: Mapped[int] = mapped_column(BigInteger)


class ImageStat(Base):
    """Images per project, assignee and status (current stage), and how many of them finished each stage
    (a non-null `images.stage_done[<stage>]`): the image figures and the gates without parsing JSON per image."""

    __tablename__ = "image_stats"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    assignee_key: Mapped[int] = mapped_column(primary_key=True)  # images.assignee_id, 0 = none
    status: Mapped[str] = mapped_column(String(32), primary_key=True)
    images: Mapped[int] = mapped_column(BigInteger)
    done_assisted_manual: Mapped[int] = mapped_column(BigInteger)
    done_semi_automatic: Mapped[int] = mapped_column(BigInteger)
    done_fully_automatic: Mapped[int] = mapped_column(BigInteger)
    done_done: Mapped[int] = mapped_column(BigInteger)


class ImageMaskCount(Base):
    """Live masks per image and author: one annotator's masks-per-image distribution."""

    __tablename__ = "image_mask_counts"
    __table_args__ = (Index("ix_image_mask_counts_image_id", "image_id"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    author_key: Mapped[int] = mapped_column(primary_key=True)
    masks: Mapped[int] = mapped_column(BigInteger)


class ReviewTotal(Base):
    """Reviews per project, reviewer and decision, and how many kept IoU > REVIEW_IOU_THRESHOLD: the
    dashboard's review figures without a pass over `mask_reviews` (a share of every auto mask)."""

    __tablename__ = "review_totals"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    reviewer_key: Mapped[int] = mapped_column(primary_key=True)  # mask_reviews.reviewer_id, 0 = none
    decision: Mapped[str] = mapped_column(String(32), primary_key=True)
    reviews: Mapped[int] = mapped_column(BigInteger)
    within: Mapped[int] = mapped_column(BigInteger)
