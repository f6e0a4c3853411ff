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
from typing import TypeVar

from pydantic import BaseModel, ValidationError

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


M = TypeVar("M", bound=BaseModel)


def _validated(model: type[M], **fields: object) -> M:
    """`model(**fields)`, its validation errors as one ValueError line: the CLI accepts exactly what the
    API accepts, because both validate with the same schema."""
    try:
        return model(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(problems) from None


def _create_user(args: argparse.Namespace) -> int:
    from backend.users.schemas import UserCreate
    from backend.users.service import create_user

    settings = Settings()
    body = _validated(UserCreate, username=args.username, password=_read_password(args.password), role=args.role)
    with _session(settings) as db:
        user = create_user(db, body.username, body.password, body.role, settings.bcrypt_rounds)
        print(f"created user {user.username!r} (id {user.id}, role {user.role.value})")
    return 0


def register_set_password(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "set-password", help="set a user's password (read from stdin or asked); their tokens are revoked"
    )
    parser.add_argument("username")
    parser.set_defaults(func=_set_password)


def _set_password(args: argparse.Namespace) -> int:
    from backend.users.schemas import PasswordReset
    from backend.users.service import get_by_username, set_password

    settings = Settings()
    body = _validated(PasswordReset, new_password=_read_password(None))
    with _session(settings) as db:
        user = set_password(db, get_by_username(db, args.username), body.new_password, settings.bcrypt_rounds)
        print(f"password of {user.username!r} changed; their tokens are revoked")
    return 0


def register_set_active(subparsers: argparse._SubParsersAction) -> None:
    for name, active, help_text in (
        ("deactivate-user", False, "stop a user from logging in and revoke their tokens (nothing is deleted)"),
        ("activate-user", True, "let a deactivated user log in again"),
    ):
        parser = subparsers.add_parser(name, help=help_text)
        parser.add_argument("username")
        parser.set_defaults(func=_set_active, active=active)


def _set_active(args: argparse.Namespace) -> int:
    from backend.users.service import get_by_username, set_active

    settings = Settings()
    with _session(settings) as db:
        user = set_active(db, get_by_username(db, args.username), args.active)
        print(f"user {user.username!r} {'activated' if user.is_active else 'deactivated'}")
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
    register_set_password,
    register_set_active,
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
