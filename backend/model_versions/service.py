"""The model registry: which weights exist, where they came from, and which one serves a project.

Every version's artifacts live under the storage root (``artifacts``: ``checkpoint``, the one-graph
browser decoder ``decoder_onnx`` and the split decoder's ``decoder_image_onnx`` + ``decoder_click_onnx``
keys, each decoder with its ``<name>_sha256`` for HTTP caching), with the checkpoint's sha256 and its
image encoder's (``encoder_sha256``: versions sharing it share embeddings). The model side writes them
(`backend.clients.model_server`); this module names their keys.
Versions stored before the split decoder existed have only ``decoder_onnx``; the annotator then
runs that one graph.

* The **untrained** default (`ensure_default_version`): on first run the seeded random weights of
  ``settings.default_model_arch`` (vit_t) are written ONCE as a checkpoint, and their browser
  decoder exported. Later processes load that file, so what the browser decodes with and what the
  worker encodes with are the same weights.
* **official** versions come from `import_checkpoint`: the file is loaded strictly as the named
  architecture by the model side (a wrong or truncated file is refused with the reason), once it is
  copied into storage, and recorded with its sha256. Importing the same file twice returns the existing version.
* The install's **default** is the global version flagged ``is_default`` (`make_default`; at most one,
  a unique index says so), else the untrained one. It is what a project without an active version
  gets (`active_version`). Importing a checkpoint does not change it by itself: the admin chooses
  (``dataengine models import|download ... --make-default``).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.clients.model_server import ModelInfo, ModelRef, ModelService
from backend.core.config import Settings
from backend.tables import ModelVersion, Project
from backend.tables.enums import ModelOrigin, ModelStatus
from model_server.api import Storage

ARCHITECTURES = ("vit_t", "vit_b", "vit_l", "vit_h")

# The first requests of a fresh install (the annotate page asks for the model and an embedding at
# once) would otherwise both write the default weights and export its decoder concurrently.
_default_version_lock = threading.Lock()


def model_ref(version: ModelVersion) -> ModelRef:
    """What the model side needs to run `version`: architecture, checkpoint key, sha256."""
    return ModelRef(version.architecture, version.artifacts["checkpoint"], version.sha256 or "")


def record_info(version: ModelVersion, info: ModelInfo) -> None:
    """Keep what the model side reported about `version`'s checkpoint (not committed)."""
    version.sha256, version.encoder_sha256 = info.sha256, info.encoder_sha256


def encoder_sha256(db: Session, client: ModelService, version: ModelVersion) -> str:
    """`version`'s image-encoder identity, asked of the model side once (`describe`) for versions
    registered before it was recorded, and kept (committed)."""
    if version.encoder_sha256 is None:
        record_info(version, client.describe(version.architecture, version.artifacts["checkpoint"]))
        db.commit()
    assert version.encoder_sha256 is not None  # record_info sets it
    return version.encoder_sha256


def _stored_sha256(storage: Storage, key: str) -> str:
    digest = hashlib.sha256()
    with storage.open(key) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _store_decoder(version: ModelVersion, storage: Storage, client: ModelService, prefix: str) -> None:
    """Export `version`'s browser decoder graphs under `prefix` and record each as ``<name>_onnx`` +
    ``<name>_onnx_sha256`` (``decoder``: the one graph; ``decoder_image`` + ``decoder_click``: the split pair)."""
    artifacts: dict[str, Any] = {}
    for name, key in client.export_decoders(model_ref(version), prefix).items():
        artifacts[f"{name}_onnx"] = key
        artifacts[f"{name}_onnx_sha256"] = _stored_sha256(storage, key)
    version.artifacts = {**version.artifacts, **artifacts}


def ensure_default_version(db: Session, storage: Storage, client: ModelService, settings: Settings) -> ModelVersion:
    """The untrained global version of ``settings.default_model_arch``, created (and committed) if missing."""
    with _default_version_lock:
        return _ensure_default_version(db, storage, client, settings)


def _ensure_default_version(db: Session, storage: Storage, client: ModelService, settings: Settings) -> ModelVersion:
    arch = settings.default_model_arch
    existing = db.scalar(
        select(ModelVersion)
        .where(
            ModelVersion.project_id.is_(None),
            ModelVersion.origin == ModelOrigin.untrained,
            ModelVersion.architecture == arch,
        )
        .order_by(ModelVersion.id)
    )
    if existing is not None and storage.exists(existing.artifacts.get("checkpoint", "models/missing")):
        return existing
    key = f"models/untrained/{arch}/checkpoint.pth"
    info = client.create_untrained(arch, key)
    version = existing or ModelVersion(
        project_id=None,
        name=f"untrained {arch}",
        architecture=arch,
        origin=ModelOrigin.untrained,
        status=ModelStatus.ready,
        metrics={},
        artifacts={},
    )
    record_info(version, info)
    version.artifacts = {"checkpoint": key}
    _store_decoder(version, storage, client, f"models/untrained/{arch}")
    db.add(version)
    db.commit()
    return version


def registered_checkpoint(db: Session, sha256: str, architecture: str) -> ModelVersion | None:
    """The global version already holding the checkpoint with this digest, if any."""
    return db.scalar(
        select(ModelVersion).where(
            ModelVersion.sha256 == sha256, ModelVersion.architecture == architecture, ModelVersion.project_id.is_(None)
        )
    )


def import_checkpoint(
    db: Session,
    storage: Storage,
    client: ModelService,
    path: Path,
    architecture: str,
    name: str | None = None,
) -> tuple[ModelVersion, bool]:
    """Register an official checkpoint file; return (version, created). The file is copied into
    storage and loaded there strictly by the model side; a refused file is removed again.

    Raises:
        ValueError: unknown architecture, or the file is not a valid `architecture` checkpoint.
        FileNotFoundError: no such file.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    sha = _file_sha256(path)
    existing = registered_checkpoint(db, sha, architecture)
    if existing is not None:
        return existing, False
    prefix = f"models/official/{architecture}-{sha[:16]}"
    key = f"{prefix}/checkpoint.pth"
    with open(path, "rb") as f:
        storage.put_stream(key, f)
    try:
        info = client.describe(architecture, key)
    except ValueError as error:
        storage.delete(key)
        raise ValueError(str(error).replace(repr(key), repr(str(path)))) from None  # name the user's file
    version = ModelVersion(
        project_id=None,
        name=name or path.name,
        architecture=architecture,
        origin=ModelOrigin.official,
        status=ModelStatus.ready,
        metrics={},
        artifacts={"checkpoint": key},
    )
    record_info(version, info)
    _store_decoder(version, storage, client, prefix)
    db.add(version)
    db.commit()
    return version, True


def default_version(db: Session, storage: Storage, client: ModelService, settings: Settings) -> ModelVersion:
    """The version flagged default if it is ready, else the untrained one."""
    chosen = db.scalar(select(ModelVersion).where(ModelVersion.is_default, ModelVersion.status == ModelStatus.ready))
    return chosen or ensure_default_version(db, storage, client, settings)


def make_default(db: Session, version: ModelVersion) -> int:
    """Flag global `version` as the install's default (committed); return how many projects moved to it.

    Projects served by an untrained version move to it: they were given random weights only because
    nothing better existed. A project on an official or trained version keeps it (someone chose it, or
    its masks were made with it); an ML engineer promotes it if wanted.
    """
    if version.project_id is not None or version.status != ModelStatus.ready:
        raise ValueError(f"model version {version.id} cannot be the default: only a ready global version can")
    # Cleared before the new flag is written: the unique index allows one flagged row at any time.
    db.execute(
        update(ModelVersion).where(ModelVersion.is_default, ModelVersion.id != version.id).values(is_default=False)
    )
    version.is_default = True
    untrained = select(ModelVersion.id).where(ModelVersion.origin == ModelOrigin.untrained)
    moved = cast(  # an UPDATE's result is a CursorResult, which has the row count
        CursorResult[Any],
        db.execute(
            update(Project)
            .where(Project.active_model_version_id.in_(untrained))
            .values(active_model_version_id=version.id)
        ),
    ).rowcount
    db.commit()
    return moved


def active_version(
    db: Session, project: Project, storage: Storage, client: ModelService, settings: Settings
) -> ModelVersion:
    """The version serving `project`; a project without one is given the default (committed)."""
    if project.active_model_version_id is not None:
        version = db.get(ModelVersion, project.active_model_version_id)
        if version is not None:
            return version
    version = default_version(db, storage, client, settings)
    project.active_model_version_id = version.id
    try:
        db.commit()
    except IntegrityError:  # pragma: no cover - concurrent first use; the other writer won
        db.rollback()
        db.refresh(project)
    return version
