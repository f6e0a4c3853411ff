"""Which image comes next: the project's strategy as an SQL order, and the scores it reads.

`next_order(project)` is the one order `claim next` (`backend.annotation.service`), the annotate
page's peek (`backend.images.service.peek_next_image`) and the automatic stage's queue
(`backend.auto`) sort candidates by, after their own first keys (the caller's own claim, their
assigned images): so what the page prefetches is what the claim gives. Every strategy but upload
order reads `image_scores` (outer join: an image not scored yet comes after the scored ones, in upload
order), so a claim stays one indexed query, never a computation over the project.

The scores are written by the score job (`backend.selection.tasks`); `rank_project` recomputes the
stored orders (seeded random, k-center diversity, the mix) from them whenever scores change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVarTuple

import numpy as np
from sqlalchemy import ColumnExpressionArgument, Select, SQLColumnExpression, case, func, select, update
from sqlalchemy.orm import Session

from backend.projects.settings import project_settings
from backend.selection import ranking
from backend.tables import Embedding, Image, ImageStatus, Project
from backend.tables.selection import ImageScore
from model_server.api import ImageScores

_Ts = TypeVarTuple("_Ts")
HISTOGRAM_BINS = 10  # the dashboard's uncertainty histogram: 10 bins over 0..1


def pooled_bytes(vector: Sequence[float]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def pooled_array(rows: Sequence[bytes]) -> np.ndarray:
    """N stored pooled vectors → NxD float32."""
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(data, dtype="<f4") for data in rows])


def with_scores(statement: Select[*_Ts]) -> Select[*_Ts]:
    """`statement` (over `Image`) joined to each image's scores, kept for images without any."""
    return statement.outerjoin(ImageScore, ImageScore.image_id == Image.id)


def next_order(project: Project) -> list[ColumnExpressionArgument[Any]]:
    """ORDER BY terms of the project's strategy (the statement must be `with_scores`); upload order
    breaks ties and orders the unscored images."""
    strategy = project_settings(project).selection.strategy
    if strategy == "upload_order":
        return [Image.id]
    key: SQLColumnExpression[Any] = {
        "random": ImageScore.random_rank,
        "uncertainty": -ImageScore.uncertainty,
        "diversity": ImageScore.diversity_rank,
        "mix": ImageScore.mix_rank,
    }[strategy]
    return [case((key.is_(None), 1), else_=0), key, Image.id]


def store_scores(db: Session, project: Project, version_id: int, scored: dict[int, ImageScores]) -> int:
    """Write the scores of the images in `scored` (image id → scores; replacing older ones) and flag
    near duplicates among them; not committed. Returns how many were flagged."""
    for image_id, scores in scored.items():
        row = db.get(ImageScore, image_id) or ImageScore(image_id=image_id, project_id=project.id)
        row.model_version_id = version_id
        row.pooled = pooled_bytes(scores.pooled)
        row.uncertainty = float(scores.uncertainty)
        row.details = {name: float(value) for name, value in scores.details.items()}
        db.add(row)
    db.flush()
    return flag_near_duplicates(db, project, sorted(scored))


def flag_near_duplicates(db: Session, project: Project, image_ids: Sequence[int]) -> int:
    """Set `near_duplicate_of` of `image_ids` from the project's stored pooled vectors (an image is
    the near duplicate of the most similar earlier upload at or above the project's threshold; flagged,
    never refused); not committed. Returns how many were flagged."""
    if not image_ids:
        return 0
    threshold = project_settings(project).selection.near_duplicate_similarity
    rows = db.execute(
        select(ImageScore.image_id, ImageScore.pooled).where(
            ImageScore.project_id == project.id, ImageScore.image_id <= max(image_ids)
        )
    ).all()
    all_ids = np.array([r.image_id for r in rows])
    vectors = pooled_array([r.pooled for r in rows])
    wanted = np.isin(all_ids, np.asarray(image_ids))
    found = ranking.near_duplicates(vectors[wanted], all_ids[wanted], vectors, all_ids, threshold)
    for image_id, match in zip(all_ids[wanted].tolist(), found):
        db.execute(
            update(ImageScore)
            .where(ImageScore.image_id == image_id)
            .values(
                near_duplicate_of=None if match is None else match[0],
                near_duplicate_similarity=None if match is None else match[1],
            )
            .execution_options(synchronize_session=False)
        )
    return sum(match is not None for match in found)


def rank_project(db: Session, project: Project) -> int:
    """Recompute the stored random, diversity and mix ranks of the project's scored images; not
    committed. Returns the images ranked.

    The images not done come first, in k-center greedy order with the done images as the chosen set;
    the done ones follow in the greedy order that continues from there, so that when a stage change
    opens them again the order is still a diversity order until the next scoring run."""
    seed = project_settings(project).selection.seed
    rows = db.execute(
        select(ImageScore.image_id, ImageScore.pooled, ImageScore.uncertainty, Image.status)
        .join(Image, Image.id == ImageScore.image_id)
        .where(ImageScore.project_id == project.id)
        .order_by(ImageScore.image_id)
    ).all()
    open_rows = [r for r in rows if r.status != ImageStatus.done]
    done_rows = [r for r in rows if r.status == ImageStatus.done]
    ids = [r.image_id for r in open_rows] + [r.image_id for r in done_rows]
    open_vectors, done_vectors = (
        pooled_array([r.pooled for r in open_rows]),
        pooled_array([r.pooled for r in done_rows]),
    )
    open_weights = np.array([r.uncertainty for r in open_rows])
    done_weights = np.array([r.uncertainty for r in done_rows])

    def greedy(weighted: bool) -> list[int]:
        first = ranking.greedy_order(open_vectors, done_vectors, open_weights if weighted else None)
        then = ranking.greedy_order(done_vectors, open_vectors, done_weights if weighted else None)
        return first + [len(open_rows) + index for index in then]

    ranks = {
        "random_rank": ranking.random_order(ids, seed),
        "diversity_rank": greedy(False),
        "mix_rank": greedy(True),
    }
    positions = {column: {ids[index]: place for place, index in enumerate(order)} for column, order in ranks.items()}
    for image_id in ids:
        db.execute(
            update(ImageScore)
            .where(ImageScore.image_id == image_id)
            .values(**{column: positions[column][image_id] for column in ranks})
            .execution_options(synchronize_session=False)
        )
    return len(ids)


def due_for_scoring(db: Session) -> list[tuple[int, int]]:
    """(project id, serving version id) of every project not archived with an embedding of its
    serving version and no score of that version for its image: what the score job would do."""
    scored = select(ImageScore.image_id).where(
        ImageScore.image_id == Embedding.image_id, ImageScore.model_version_id == Embedding.model_version_id
    )
    rows = db.execute(
        select(Project.id, Project.active_model_version_id)
        .where(
            Project.archived_at.is_(None),
            select(Embedding.id)
            .join(Image, Image.id == Embedding.image_id)
            .where(
                Image.project_id == Project.id,
                Embedding.model_version_id == Project.active_model_version_id,
                ~scored.exists(),
            )
            .exists(),
        )
        .order_by(Project.id)
    ).all()
    return [(project_id, version_id) for project_id, version_id in rows if version_id is not None]


def uncertainty_histogram(db: Session, project: Project) -> tuple[list[int], int]:
    """Counts of the project's scored images per uncertainty bin (`HISTOGRAM_BINS` over 0..1), and
    how many images have no score yet. One float per image is read (a histogram in SQL would need
    floor/least, which SQLite and PostgreSQL spell differently)."""
    values = db.scalars(select(ImageScore.uncertainty).where(ImageScore.project_id == project.id)).all()
    # Bin i holds [i/10, (i+1)/10), the last one 1.0 too. Not np.histogram: its edges are
    # linspace(0, 1, 11), whose 0.30000000000000004 put a score of exactly 0.3 in the 0.2-0.3 bar.
    scaled = np.floor(np.clip(np.asarray(values, dtype=np.float64), 0, 1) * HISTOGRAM_BINS).astype(np.int64)
    counts = np.bincount(np.minimum(scaled, HISTOGRAM_BINS - 1), minlength=HISTOGRAM_BINS)
    total = db.scalar(select(func.count(Image.id)).where(Image.project_id == project.id)) or 0
    return [int(c) for c in counts], total - len(values)


def upcoming(db: Session, project: Project, limit: int) -> list[tuple[Image, ImageScore | None]]:
    """The next `limit` unfinished images in the project's order (whoever would claim them)."""
    statement = with_scores(
        select(Image, ImageScore).where(
            Image.project_id == project.id, Image.status.in_((ImageStatus.new, ImageStatus.in_progress))
        )
    )
    return [(image, score) for image, score in db.execute(statement.order_by(*next_order(project)).limit(limit))]
