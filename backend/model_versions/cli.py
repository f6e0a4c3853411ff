"""`dataengine models`: register official checkpoints and list the versions the engine knows.

`dataengine models import PATH --arch vit_b` loads the file strictly as that architecture (a wrong,
truncated or other-architecture file is refused with the reason), copies it under the storage root,
exports its browser decoder and records it as an `official` version with its sha256.
`dataengine models download vit_b` fetches the official file first (see `download`: the only command
that goes online) and then imports it the same way.

Either then offers to make the version the install's default (`--make-default`, or a question on a
terminal): new projects, and projects still on the untrained model, are served by it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from backend.core.config import Settings
from backend.model_versions.download import OFFICIAL_CHECKPOINTS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from backend.tables import ModelVersion


MAKE_DEFAULT_HELP = "make it the default model (new projects, and projects on the untrained model, get it)"


def register_models(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="model versions: download or import an official checkpoint, list versions"
    )
    commands = parser.add_subparsers(dest="models_command", required=True)
    imp = commands.add_parser("import", help="register an official SAM checkpoint (checked strictly)")
    imp.add_argument("path", type=Path, help="e.g. sam_vit_b_01ec64.pth")
    imp.add_argument("--arch", required=True, choices=["vit_t", "vit_b", "vit_l", "vit_h"])
    imp.add_argument("--name", help="display name (default: the file name)")
    imp.add_argument("--make-default", action="store_true", help=MAKE_DEFAULT_HELP)
    imp.set_defaults(func=_import)
    dl = commands.add_parser(
        "download", help="fetch an official SAM checkpoint from Meta (resumable, sha256 checked) and import it"
    )
    dl.add_argument("arch", choices=sorted(OFFICIAL_CHECKPOINTS))
    dl.add_argument("--make-default", action="store_true", help=MAKE_DEFAULT_HELP)
    dl.set_defaults(func=_download)
    listing = commands.add_parser("list", help="list the model versions")
    listing.set_defaults(func=_list)


def _session(settings: Settings) -> Session:
    from backend.core.db import make_engine, make_session_factory

    return make_session_factory(make_engine(settings.db_url))()


def _import(args: argparse.Namespace) -> int:
    _register(Settings(), args.path, args.arch, args.name, args.make_default)
    return 0


def _register(settings: Settings, path: Path, arch: str, name: str | None, make_default: bool) -> None:
    """Import `path` as an official `arch` version (the one code path of import and download)."""
    from backend.clients.model_server import model_service
    from backend.model_versions.service import import_checkpoint
    from backend.storage import storage_for

    storage = storage_for(settings)
    with _session(settings) as db:
        version, created = import_checkpoint(db, storage, model_service(settings, storage), path, arch, name)
        state = "imported" if created else "already registered as"
        print(
            f"{state} model version {version.id}: {version.name} ({version.architecture}, origin "
            f"{version.origin.value}, sha256 {version.sha256})"
        )
        _offer_default(db, version, make_default)


def _offer_default(db: Session, version: ModelVersion, wanted: bool) -> None:
    """Make `version` the default if asked (the flag, or yes to the question, asked only on a terminal)."""
    from backend.model_versions.service import make_default

    if version.is_default:
        print(f"model version {version.id} is the default")
        return
    if not wanted and sys.stdin.isatty() and sys.stdout.isatty():
        answer = input(
            f"make model version {version.id} the default (new projects, and projects on the untrained "
            "model, get it)? [y/N] "
        )
        wanted = answer.strip().lower() in ("y", "yes")
    if wanted:
        moved = make_default(db, version)
        print(f"model version {version.id} is now the default; {moved} project(s) moved off the untrained model")
    else:
        print("not made the default (run the command again with --make-default to do so)")


def _download(args: argparse.Namespace) -> int:
    """Fetch and import unless a version with the official digest is already registered (no network then)."""
    from backend.model_versions.download import DownloadError, download
    from backend.model_versions.service import registered_checkpoint

    settings = Settings()
    entry = OFFICIAL_CHECKPOINTS[args.arch]
    with _session(settings) as db:
        version = registered_checkpoint(db, entry.sha256, entry.architecture)
        if version is not None:
            print(f"already registered as model version {version.id}: {version.name}")
            _offer_default(db, version, args.make_default)
            return 0
    try:
        path = download(entry, settings.weights_base_url, settings.data_dir / "downloads")
    except DownloadError as exc:
        print(
            f"dataengine models download: error: {exc}. Offline? Fetch {entry.file_name} elsewhere and run "
            f"`dataengine models import /path/{entry.file_name} --arch {entry.architecture}`",
            file=sys.stderr,
        )
        return 2
    _register(settings, path, entry.architecture, None, args.make_default)
    path.unlink()  # the checkpoint now lives in storage
    return 0


def _list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from backend.tables import ModelVersion

    settings = Settings()
    with _session(settings) as db:
        for v in db.scalars(select(ModelVersion).order_by(ModelVersion.id)):
            scope = f"project {v.project_id}" if v.project_id else "global, default" if v.is_default else "global"
            print(f"{v.id}\t{v.name}\t{v.architecture}\t{v.origin.value}\t{v.status.value}\t{scope}\t{v.sha256}")
    return 0
