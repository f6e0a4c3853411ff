"""Median / p90 of seconds per mask, exactly `percentile_cont(q)` of the live masks, from two rollups.

`mask_seconds` (counts per quarter-second bucket) says which bucket holds rank floor(q*(n-1)) and how
many values lie below it; the value itself (and the next one, to interpolate) is read from
`mask_seconds_values` (live masks per exact value) within that bucket and, when the next rank lies beyond
it, the next non-empty one: a walk over the distinct values of one or two buckets, whatever the number of
masks sharing them.

Read for a project, one annotator, or every annotator of the annotators table in one query.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from backend.dashboard.scope import Scope
from backend.tables import MaskSecondsBucket
from backend.tables.dashboard import SECONDS_BUCKETS_PER_SECOND, MaskSecondsValue


def scope_buckets(db: Session, scope: Scope) -> list[tuple[int, int]]:
    """The scope's [(bucket, live timed masks)] ascending, from `mask_seconds`."""
    where = [MaskSecondsBucket.project_id == scope.project_id, MaskSecondsBucket.masks > 0]
    if scope.author_id is not None:
        where.append(MaskSecondsBucket.author_key == scope.author_id)
    rows = db.execute(
        select(MaskSecondsBucket.bucket, func.sum(MaskSecondsBucket.masks))
        .where(*where)
        .group_by(MaskSecondsBucket.bucket)
        .order_by(MaskSecondsBucket.bucket)
    ).all()
    return [(b, int(n)) for b, n in rows]


def author_buckets(db: Session, project_id: int) -> dict[int, list[tuple[int, int]]]:
    """Every author's [(bucket, live timed masks)] ascending (author_key 0, masks without author, included)."""
    rows = db.execute(
        select(MaskSecondsBucket.author_key, MaskSecondsBucket.bucket, MaskSecondsBucket.masks)
        .where(MaskSecondsBucket.project_id == project_id, MaskSecondsBucket.masks > 0)
        .order_by(MaskSecondsBucket.author_key, MaskSecondsBucket.bucket)
    ).all()
    out: dict[int, list[tuple[int, int]]] = {}
    for author, b, n in rows:
        out.setdefault(author, []).append((b, int(n)))
    return out


def percentiles(
    db: Session, scope: Scope, qs: Sequence[float], buckets: list[tuple[int, int]] | None = None
) -> list[float | None]:
    """Exactly `percentile_cont(q)` of the scope's live masks' seconds_spent, for each q in `qs`.

    `buckets` are the scope's [(bucket, count)] from `mask_seconds` if the caller already has them.
    """
    if buckets is None:
        buckets = scope_buckets(db, scope)
    return many_percentiles(db, [(scope, buckets)], qs)[0]


def many_percentiles(
    db: Session, scopes: Sequence[tuple[Scope, list[tuple[int, int]]]], qs: Sequence[float]
) -> list[list[float | None]]:
    """`percentiles` of several scopes of one project (each with its `mask_seconds` buckets) in one query.

    For each percentile: the ranks wanted are low = floor(q*(n-1)) and low + 1; the bucket holding rank
    low (and `below` it, the masks of lower buckets) comes from the bucket counts, and the values of that
    bucket, or of it and the next non-empty one when rank low + 1 lies beyond it, from `mask_seconds_values`:
    one SELECT of those seconds ranges (an OR of primary-key ranges), summed per value here.
    """
    reads: list[tuple[int, int, float, int, int, int | None, float, float]] = []
    for i, (scope, buckets) in enumerate(scopes):
        n = sum(count for _, count in buckets)
        for j, q in enumerate(qs):
            if n == 0:
                continue
            position = q * (n - 1)
            low = math.floor(position)
            below, at = 0, 0
            while below + buckets[at][1] <= low:  # the bucket holding rank `low`
                below += buckets[at][1]
                at += 1
            last = at + 1 if below + buckets[at][1] <= low + 1 < n else at  # the bucket holding rank low + 1
            start = buckets[at][0] / SECONDS_BUCKETS_PER_SECOND  # exact: a power-of-two divisor
            end = (buckets[last][0] + 1) / SECONDS_BUCKETS_PER_SECOND
            reads.append((i, j, position, low, below, scope.author_id, start, end))
    out: list[list[float | None]] = [[None] * len(qs) for _ in scopes]
    if not reads:
        return out
    ranges = []
    for *_, author, start, end in reads:
        where = [MaskSecondsValue.seconds >= start, MaskSecondsValue.seconds < end]
        if author is not None:
            where.append(MaskSecondsValue.author_key == author)
        ranges.append(and_(*where))
    rows = db.execute(
        select(MaskSecondsValue.author_key, MaskSecondsValue.seconds, MaskSecondsValue.masks).where(
            MaskSecondsValue.project_id == scopes[0][0].project_id, MaskSecondsValue.masks > 0, or_(*ranges)
        )
    ).all()
    for i, j, position, low, below, author, start, end in reads:
        counts: dict[float, int] = {}
        for a, v, count in rows:
            if (author is None or a == author) and start <= v < end:
                counts[float(v)] = counts.get(float(v), 0) + int(count)
        ranked = sorted(counts.items())
        value = _at_rank(ranked, low - below)
        if position > low:
            value += (position - low) * (_at_rank(ranked, low + 1 - below) - value)
        out[i][j] = value
    return out


def _at_rank(ranked: list[tuple[float, int]], rank: int) -> float:
    """The value of 0-based `rank` among ascending (value, count) pairs."""
    for value, count in ranked:
        if rank < count:
            return value
        rank -= count
    raise LookupError("mask_seconds and mask_seconds_values disagree: run `dataengine rebuild-rollups`")
