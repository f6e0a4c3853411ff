"""`dataengine rebuild-rollups [--project ID]`: recompute the dashboard rollups from `masks`.

The triggers keep the rollups exact for every write; this is for after a bulk load that bypassed them
(`session_replication_role = replica`, a restore of `masks` alone) or to repair. One transaction per project.
"""

from __future__ import annotations

import argparse

from backend.core.config import Settings


def register_rebuild_rollups(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rebuild-rollups", help="recompute the dashboard rollups from the masks")
    parser.add_argument("--project", type=int, help="only this project id (default: every project)")
    parser.set_defaults(func=_rebuild)


def _rebuild(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from backend.core.db import make_engine, make_session_factory
    from backend.dashboard.rollups import rebuild_rollups
    from backend.tables import Project

    engine = make_engine(Settings().db_url)
    try:
        with make_session_factory(engine)() as db:
            ids = (
                [args.project]
                if args.project is not None
                else list(db.scalars(select(Project.id).order_by(Project.id)))
            )
            for project_id in ids:
                if db.get(Project, project_id) is None:
                    raise ValueError(f"no project with id {project_id}")
                rebuild_rollups(db, project_id)
                db.commit()
                print(f"rebuilt dashboard rollups of project {project_id}")
    finally:
        engine.dispose()
    return 0
