"""`dataengine models`: register official checkpoints and list the versions the engine knows.

`dataengine models import PATH --arch vit_b` loads the file strictly as that architecture (a wrong,
truncated or other-architecture file is refused with the reason), copies it under the storage root,
exports its browser decoder and records it as an `official` version with its sha256. New projects
(and projects still on the untrained default) are then served by the newest official version.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.core.config import Settings


def register_models(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="model versions: import an official checkpoint, list versions")
    commands = parser.add_subparsers(dest="models_command", required=True)
    imp = commands.add_parser("import", help="register an official SAM checkpoint (checked strictly)")
    imp.add_argument("path", type=Path, help="e.g. sam_vit_b_01ec64.pth")
    imp.add_argument("--arch", required=True, choices=["vit_t", "vit_b", "vit_l", "vit_h"])
    imp.add_argument("--name", help="display name (default: the file name)")
    imp.set_defaults(func=_import)
    listing = commands.add_parser("list", help="list the model versions")
    listing.set_defaults(func=_list)


def _session(settings: Settings):  # type: ignore[no-untyped-def]
    from backend.core.db import make_engine, make_session_factory

    return make_session_factory(make_engine(settings.db_url))()


def _import(args: argparse.Namespace) -> int:
    from backend.clients.model_server import ModelServerClient
    from backend.model_versions.service import import_checkpoint
    from backend.storage import LocalStorage

    settings = Settings()
    with _session(settings) as db:
        version, created = import_checkpoint(
            db, LocalStorage(settings.storage_path), ModelServerClient(), args.path, args.arch, args.name
        )
    state = "imported" if created else "already registered as"
    print(f"{state} model version {version.id}: {version.name} ({version.architecture}, origin "
          f"{version.origin.value}, sha256 {version.sha256})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from backend.models import ModelVersion

    settings = Settings()
    with _session(settings) as db:
        for v in db.scalars(select(ModelVersion).order_by(ModelVersion.id)):
            scope = f"project {v.project_id}" if v.project_id else "global"
            print(f"{v.id}\t{v.name}\t{v.architecture}\t{v.origin.value}\t{v.status.value}\t{scope}\t{v.sha256}")
    return 0
