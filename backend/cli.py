"""The `dataengine` command: one sub-command per function, registered in `SUBCOMMANDS`.

A sub-command is a function `register(subparsers)` that adds its parser and sets `func` (a callable
taking the parsed arguments and returning an exit code). Other modules add theirs with one line in
`SUBCOMMANDS`; heavy imports stay inside the `func` so `dataengine --help` is instant.

Every command reads `Settings()` (the `DATAENGINE_*` environment) for the database and storage, so
every command, from any folder, works on the same data home (see `backend.core.config`). Before a
command runs, `main` checks that the database exists and is migrated (a command that sets
`needs_schema=False`, like `migrate`, skips that), so an uninitialised install gets one line saying
what to run instead of an empty SQLite file and a traceback. User errors (`ValueError`,
`LookupError`, `OSError`: bad input, unknown ids, missing files) are one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from backend.core.config import Settings
from backend.dashboard.cli import register_rebuild_rollups
from backend.model_versions.cli import register_models
from backend.up import register_up

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def _session(settings: Settings) -> Session:
    from backend.core.db import make_engine, make_session_factory

    return make_session_factory(make_engine(settings.db_url))()


def register_migrate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("migrate", help="bring the database schema up to date (Alembic)")
    parser.add_argument("--revision", default="head", help="target revision (default: head)")
    parser.set_defaults(func=_migrate, needs_schema=False)


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
    from backend.users.schemas import UserCreate
    from backend.users.service import create_user

    settings = Settings()
    # The API's schema: the CLI accepts exactly what the API accepts.
    body = UserCreate(username=args.username, password=_read_password(args.password), role=args.role)
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
    body = PasswordReset(new_password=_read_password(None))
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
    from backend.storage import storage_for
    from backend.tables import Project

    settings = Settings()
    with _session(settings) as db:
        project = db.get(Project, args.project_id)
        if project is None:
            raise ValueError(f"project {args.project_id} not found")
        report = import_folder(db, storage_for(settings), settings, project, args.folder)
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


def _one_line(exc: Exception) -> str:
    """The error as one line; a pydantic error names each field that failed."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return " ".join(str(exc).split())


def require_schema(settings: Settings) -> None:
    """Raise a ValueError saying what to run unless the database exists and is at the code's revision.

    A missing SQLite file is not opened (that would create an empty one)."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DatabaseError

    from backend.core.db import make_engine
    from backend.core.migrations import alembic_config

    url = make_url(settings.db_url)
    shown = url.render_as_string(hide_password=True)
    run = "run `dataengine migrate` (or `dataengine up`)"
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_file():
        raise ValueError(f"database not initialised ({url.database} does not exist): {run}")
    engine = make_engine(settings.db_url)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except DatabaseError as exc:  # unreachable server, wrong password, not a database file
        raise ValueError(f"cannot open the database {shown}: {exc.orig}") from None
    finally:
        engine.dispose()
    expected = set(ScriptDirectory.from_config(alembic_config(settings.db_url)).get_heads())
    if not current:
        raise ValueError(f"database not initialised ({shown} has no schema): {run}")
    if current != expected:
        raise ValueError(
            f"database {shown} is at revision {', '.join(sorted(current))}, this code expects "
            f"{', '.join(sorted(expected))}: run `dataengine migrate`"
        )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        home = Settings().data_dir
    except ValidationError as exc:
        print(f"dataengine: error: a DATAENGINE_* variable is invalid: {_one_line(exc)}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(
        prog="dataengine",
        description="The data engine for segmentation masks.",
        epilog=f"Data home (database, storage, keys, logs): {home}\nSet DATAENGINE_HOME to use another.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # a path is not wrapped
    subparsers = parser.add_subparsers(dest="command", required=True)
    for register in SUBCOMMANDS:
        register(subparsers)
    args = parser.parse_args(argv)
    try:
        if getattr(args, "needs_schema", True):
            require_schema(Settings())
        return int(args.func(args) or 0)
    except (ValueError, LookupError, OSError) as exc:
        print(f"dataengine {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
