"""The `dataengine` command: one sub-command per function, registered in `SUBCOMMANDS`.

A sub-command is a function `register(subparsers)` that adds its parser and sets `func` (a callable
taking the parsed arguments and returning an exit code). Other modules add theirs with one line in
`SUBCOMMANDS`; heavy imports stay inside the `func` so `dataengine --help` is instant.

Every command reads `Settings()` (the `DATAENGINE_*` environment) for the database and storage.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from backend.core.config import Settings
from backend.dashboard.cli import register_rebuild_rollups
from backend.model_versions.cli import register_models
from backend.up import register_up



def _session(settings: Settings):  # type: ignore[no-untyped-def]
    from backend.core.db import make_engine, make_session_factory

    return make_session_factory(make_engine(settings.db_url))()


def register_migrate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("migrate", help="bring the database schema up to date (Alembic)")
    parser.add_argument("--revision", default="head", help="target revision (default: head)")
    parser.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    from backend.core.migrations import upgrade

    settings = Settings()
    upgrade(settings.db_url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def register_create_user(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("create-user", help="create a user (asks for the password unless given)")
    parser.add_argument("username")
    parser.add_argument("--role", default="annotator", choices=["admin", "manager", "annotator", "ml_engineer"])
    parser.add_argument("--password", help="the password; default: read from stdin or asked interactively")
    parser.set_defaults(func=_create_user)


def _read_password(given: str | None) -> str:
    if given is not None:
        return given
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the passwords differ")
    return first


def _create_user(args: argparse.Namespace) -> int:
    from backend.models import Role
    from backend.users.service import create_user

    settings = Settings()
    password = _read_password(args.password)
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")
    with _session(settings) as db:
        user = create_user(db, args.username, password, Role(args.role), settings.bcrypt_rounds)
        print(f"created user {user.username!r} (id {user.id}, role {user.role.value})")
    return 0


def register_import_folder(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-folder", help="import every image under a folder into a project (bad files are skipped and listed)"
    )
    parser.add_argument("project_id", type=int)
    parser.add_argument("folder", type=Path)
    parser.set_defaults(func=_import_folder)


def _import_folder(args: argparse.Namespace) -> int:
    from backend.images.service import import_folder
    from backend.models import Project
    from backend.storage import LocalStorage

    settings = Settings()
    with _session(settings) as db:
        project = db.get(Project, args.project_id)
        if project is None:
            raise ValueError(f"project {args.project_id} not found")
        report = import_folder(db, LocalStorage(settings.storage_path), settings, project, args.folder)
    for rejection in report.rejected:
        print(f"skipped {rejection}", file=sys.stderr)
    for dup in report.duplicates:
        print(f"duplicate {dup.file_name} (already image {dup.image_id})")
    print(f"imported {len(report.images)} images, {len(report.duplicates)} duplicates, {len(report.rejected)} skipped")
    return 0


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    register_migrate,
    register_create_user,
    register_import_folder,
    register_up,
    register_models,
    register_rebuild_rollups,
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dataengine", description="The data engine for segmentation masks.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for register in SUBCOMMANDS:
        register(subparsers)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, LookupError, FileNotFoundError) as exc:
        print(f"dataengine {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
