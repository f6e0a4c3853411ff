"""Shared backend fixtures: every API test runs on SQLite and on the real PostgreSQL.

- `settings`: `Settings` with a temporary data dir/storage root and a freshly migrated database,
  parametrised over `sqlite` and `postgresql`. Mutating it inside a test (e.g. `settings.max_upload_bytes
  = 1000`) takes effect on the running app, which reads limits per request.
- `client`: `TestClient(create_app(settings))`; `db`: a `Session` on the same database.
- `make_user(role, username=None, password=...) -> User`; `login(user) -> {"Authorization": ...}`.
- `admin` / `admin_headers`, `manager` / `manager_headers`, `project` (created by `manager`, who is its
  member with role_in_project manager), `image_bytes` (a real JPEG from ../shared/data).
- `empty_database_url`: an empty database (no tables), for migration tests.

PostgreSQL: `DATAENGINE_TEST_POSTGRES_URL` (default `postgresql+psycopg://postgres@127.0.0.1:5432/test`)
names a server and a database to connect to; each test session creates its own database there
(`dataengine_test_<random>`), migrates it with Alembic, empties its tables after every test and drops it
at the end. If the server is unreachable the PostgreSQL cases are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.core.db import make_engine, make_session_factory
from backend.core.migrations import upgrade
from backend.core.security import create_access_token, hash_password
from backend.main import create_app
from backend.projects.service import create_project
from backend.tables import Project, ProjectMember, Role, User
from backend.worker import celery_app

POSTGRES_URL = os.environ.get("DATAENGINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TEST_PASSWORD = "correct horse battery"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _admin_engine() -> Engine:
    """An AUTOCOMMIT connection pool to the server's `test` database, for CREATE/DROP DATABASE."""
    return create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def _postgres_reachable() -> str | None:
    """None if the server answers, else why not."""
    try:
        engine = _admin_engine()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"PostgreSQL at {make_url(POSTGRES_URL).render_as_string(hide_password=True)} unreachable: {exc}"


def create_postgres_database() -> str:
    """Create an empty database with a unique name on the test server; returns its URL."""
    name = f"dataengine_test_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def _postgres_migrated() -> Iterator[str]:
    reason = _postgres_reachable()
    if reason:
        pytest.skip(reason)
    url = create_postgres_database()
    try:
        upgrade(url)
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating every time)."""
    path = tmp_path_factory.mktemp("sqlite_template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _empty_tables(url: str) -> None:
    """Remove every row (of every table, including ones added by later migrations) but the Alembic version."""
    engine = make_engine(url)
    with engine.begin() as conn:
        tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        if tables:
            conn.execute(text(f"TRUNCATE {', '.join(chr(34) + t + chr(34) for t in tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database with no rows, on the backend named by the parameter."""
    if request.param == "sqlite":
        path = tmp_path / "dataengine.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("_postgres_migrated")
        _empty_tables(url)
        yield url
        _empty_tables(url)


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (not even alembic_version), dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    reason = _postgres_reachable()
    if reason:
        pytest.skip(reason)
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        bcrypt_rounds=4,
        frontend_dist=tmp_path / "no-frontend",
        # The tests' own receivers (webhooks, URL imports) listen on loopback, a private address.
        outbound_allowed_networks=["127.0.0.0/8"],
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as test_client:
        yield test_client
    app.state.engine.dispose()


@pytest.fixture
def db(settings: Settings) -> Iterator[Session]:
    engine = make_engine(settings.db_url)
    with make_session_factory(engine)() as session:
        yield session
    engine.dispose()


@pytest.fixture
def make_user(db: Session) -> Callable[..., User]:
    counter = iter(range(1, 1_000_000))

    def _make(role: Role | str = Role.annotator, username: str | None = None, password: str = TEST_PASSWORD) -> User:
        role = Role(role)
        user = User(
            username=username or f"{role.value}{next(counter)}",
            password_hash=hash_password(password, rounds=4),
            role=role,
        )
        db.add(user)
        db.commit()
        return user

    return _make


@pytest.fixture
def login(settings: Settings) -> Callable[[User], dict[str, str]]:
    """Bearer headers for `user` (a token minted directly; the login endpoint has its own tests)."""

    def _login(user: User) -> dict[str, str]:
        token = create_access_token(user.id, settings.ensure_secret_key(), 60, settings.jwt_algorithm)
        return {"Authorization": f"Bearer {token}"}

    return _login


@pytest.fixture
def admin(make_user: Callable[..., User]) -> User:
    return make_user(Role.admin, "admin")


@pytest.fixture
def admin_headers(admin: User, login: Callable[[User], dict[str, str]]) -> dict[str, str]:
    return login(admin)


@pytest.fixture
def manager(make_user: Callable[..., User]) -> User:
    return make_user(Role.manager, "manager")


@pytest.fixture
def manager_headers(manager: User, login: Callable[[User], dict[str, str]]) -> dict[str, str]:
    return login(manager)


@pytest.fixture
def project(db: Session, manager: User) -> Project:
    return create_project(db, manager, "Test project", "made by the `project` fixture")


@pytest.fixture
def ml(
    db: Session, project: Project, make_user: Callable[..., User], login: Callable[[User], dict[str, str]]
) -> dict[str, str]:
    """Headers of an ML engineer who is a member of `project`."""
    user = make_user(Role.ml_engineer)
    db.add(ProjectMember(project_id=project.id, user_id=user.id))
    db.commit()
    return login(user)


@pytest.fixture
def eager(settings: Settings) -> Iterator[None]:
    """Celery tasks run in the test's process as they are sent (the tests of a job without a worker)."""
    celery_app.configure(settings, eager=True)
    yield
    celery_app.configure(settings, eager=False)


@pytest.fixture(scope="session")
def image_path(data_root: Path) -> Path:
    path = data_root / "grabcut" / "images" / "106024.jpg"
    if not path.is_file():
        pytest.skip(f"test image missing: {path}")
    return path


@pytest.fixture(scope="session")
def image_bytes(image_path: Path) -> bytes:
    """A real RGB JPEG photograph."""
    return image_path.read_bytes()
