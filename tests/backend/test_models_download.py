"""`dataengine models download`: fetched from a loopback server standing in for Meta's, sha256 checked,
resumed with a Range request after a cut, refused when corrupted, one line when offline; and the
install's default model version (`--make-default`, `service.make_default`, migration 0008).

A real vit_b is 375 MB, so the download tests add a small entry to the table of official checkpoints
(a vit_t state dict under its own digest); everything after the table lookup is the users' code path.
"""

from __future__ import annotations

import hashlib
import io
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import pytest
import sqlalchemy as sa
import torch
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backend.cli import main
from backend.core.db import make_engine
from backend.core.migrations import REPO_ROOT, upgrade
from backend.model_versions import download
from backend.model_versions.service import default_version, make_default
from backend.tables import ModelVersion, Project
from backend.tables.enums import ModelOrigin
from model_server.sam.build import build_sam

FILE_NAME = "sam_vit_t_test.pth"
sqlite_only = pytest.mark.parametrize(
    "database_url", ["sqlite"], indirect=True
)  # imports are slow; the CLI is the same


class WeightsServer:
    """Serves `files` over loopback HTTP with Range support; `cut_at` makes the next answer stop after
    that many body bytes and drop the connection. `ranges` records each request's Range header."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.ranges, self.cut_at = files, [], None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.ranges.append(self.headers.get("Range"))
                body = server.files.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-")) if self.headers["Range"] else 0
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut, server.cut_at = server.cut_at, None
                self.wfile.write(body[start : start + cut] if cut is not None else body[start:])
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/segment_anything"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("weights") / FILE_NAME
    torch.save(build_sam("vit_t", seed=3).state_dict(), path)
    return path.read_bytes()


@pytest.fixture
def entry(checkpoint_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> download.OfficialCheckpoint:
    """The test's entry in the table of official checkpoints: `models download vit_t_test`."""
    test_entry = download.OfficialCheckpoint("vit_t", FILE_NAME, hashlib.sha256(checkpoint_bytes).hexdigest())
    monkeypatch.setitem(download.OFFICIAL_CHECKPOINTS, "vit_t_test", test_entry)
    return test_entry


@pytest.fixture
def server(checkpoint_bytes: bytes, settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[WeightsServer]:
    with WeightsServer({FILE_NAME: checkpoint_bytes}) as weights:
        monkeypatch.setenv("DATAENGINE_DATABASE_URL", settings.db_url)
        monkeypatch.setenv("DATAENGINE_DATA_DIR", str(settings.data_dir))
        monkeypatch.setenv("DATAENGINE_WEIGHTS_BASE_URL", weights.base_url)
        yield weights


def _untrained(db, project: Project) -> ModelVersion:
    """A global untrained version serving `project` (rows only: these tests never load its files)."""
    version = ModelVersion(
        name="untrained vit_t", architecture="vit_t", origin=ModelOrigin.untrained, artifacts={}, metrics={}
    )
    db.add(version)
    db.flush()
    project.active_model_version_id = version.id
    db.commit()
    return version


def _official(db) -> list[ModelVersion]:
    return list(db.scalars(select(ModelVersion).where(ModelVersion.origin == ModelOrigin.official)))


def _downloads(settings) -> list[str]:
    folder = settings.data_dir / "downloads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@sqlite_only
def test_download_imports_it_as_official_then_makes_it_the_default(
    entry, server, settings, db, project, monkeypatch, capsys
):
    untrained = _untrained(db, project)
    assert main(["models", "download", "vit_t_test"]) == 0
    out = capsys.readouterr()
    assert "imported model version" in out.out and "not made the default" in out.out
    assert f"{FILE_NAME}: " in out.err and "MB received" in out.err  # plain progress lines: not a terminal
    (version,) = _official(db)
    assert version.sha256 == entry.sha256 and version.architecture == "vit_t" and not version.is_default
    assert server.ranges == [None] and _downloads(settings) == []  # the checkpoint lives in storage now
    db.refresh(project)
    assert project.active_model_version_id == untrained.id

    # Again, on a terminal, answering yes: no second download, the version becomes the default.
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["models", "download", "vit_t_test"]) == 0
    assert "already registered as model version" in capsys.readouterr().out
    assert server.ranges == [None]
    db.expire_all()
    assert _official(db)[0].is_default and db.get(Project, project.id).active_model_version_id == version.id
    assert main(["models", "list"]) == 0
    assert "global, default" in capsys.readouterr().out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@sqlite_only
def test_a_corrupted_download_is_refused_and_deleted(entry, server, settings, db, checkpoint_bytes, capsys):
    corrupted = bytearray(checkpoint_bytes)
    corrupted[len(corrupted) // 2] ^= 0xFF
    server.files[FILE_NAME] = bytes(corrupted)
    assert main(["models", "download", "vit_t_test", "--make-default"]) == 2
    err = capsys.readouterr().err
    assert f"not the official {entry.sha256}: refused and deleted" in err
    assert _official(db) == [] and _downloads(settings) == []


@sqlite_only
def test_an_interrupted_download_resumes_with_a_range_request(entry, server, settings, db, checkpoint_bytes, capsys):
    cut = len(checkpoint_bytes) // 3
    server.cut_at = cut
    assert main(["models", "download", "vit_t_test"]) == 2
    err = capsys.readouterr().err
    assert "run the command again to resume" in err and "dataengine models import /path/" in err
    assert _downloads(settings) == [f"{FILE_NAME}.part"] and _official(db) == []
    assert (settings.data_dir / "downloads" / f"{FILE_NAME}.part").stat().st_size == cut

    assert main(["models", "download", "vit_t_test", "--make-default"]) == 0
    out = capsys.readouterr()
    assert server.ranges == [None, f"bytes={cut}-"]
    assert f"resuming at {cut / 1e6:.1f} MB" in out.err and "is now the default" in out.out
    (version,) = _official(db)
    assert version.sha256 == entry.sha256 and version.is_default and _downloads(settings) == []


@sqlite_only
def test_offline_it_fails_in_one_line_naming_the_import_command(settings, tmp_path):
    """The real table (vit_b), as a user runs it: a subprocess, nothing listening at the URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the with-block ends: connections are refused
    env = {
        "PATH": "/usr/bin:/bin",
        "DATAENGINE_DATABASE_URL": settings.db_url,
        "DATAENGINE_DATA_DIR": str(settings.data_dir),
        "DATAENGINE_WEIGHTS_BASE_URL": f"http://127.0.0.1:{port}/x",
    }
    result = subprocess.run(
        [sys.executable, "-m", "backend.cli", "models", "download", "vit_b"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "cannot download" in result.stderr and "Connection refused" in result.stderr
    assert "`dataengine models import /path/sam_vit_b_01ec64.pth --arch vit_b`" in result.stderr
    assert _downloads(settings) == []


def test_the_default_is_the_flagged_version_and_moves_projects_off_untrained(db, project, manager):
    from backend.projects.service import create_project

    untrained = _untrained(db, project)
    chosen = create_project(db, manager, "on an official version")
    first = ModelVersion(name="a", architecture="vit_b", origin=ModelOrigin.official, artifacts={}, metrics={})
    second = ModelVersion(name="b", architecture="vit_h", origin=ModelOrigin.official, artifacts={}, metrics={})
    db.add_all([first, second])
    db.flush()
    chosen.active_model_version_id = second.id
    db.commit()

    assert make_default(db, first) == 1  # the project on untrained moves; the one on `second` stays
    assert db.get(Project, project.id).active_model_version_id == first.id
    assert db.get(Project, chosen.id).active_model_version_id == second.id
    assert default_version(db, None, None, None) == first  # flagged: nothing else is consulted
    assert make_default(db, second) == 0
    db.expire_all()
    assert not db.get(ModelVersion, first.id).is_default and db.get(ModelVersion, second.id).is_default
    assert not db.get(ModelVersion, untrained.id).is_default

    scoped = ModelVersion(
        project_id=project.id, name="t", architecture="vit_t", origin=ModelOrigin.trained, artifacts={}, metrics={}
    )
    db.add(scoped)
    db.commit()
    with pytest.raises(ValueError, match="only a ready global version"):
        make_default(db, scoped)
    db.add(
        ModelVersion(
            name="c", architecture="vit_b", origin=ModelOrigin.official, artifacts={}, metrics={}, is_default=True
        )
    )
    with pytest.raises(IntegrityError):  # the database itself allows one default
        db.commit()
    db.rollback()


def test_upgrading_keeps_the_newest_official_version_as_the_default(empty_database_url):
    """Before 0008 new projects got the newest ready global official version; after it they still do."""
    upgrade(empty_database_url, "0007")
    engine = make_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            for name, origin in (("untrained", "untrained"), ("old", "official"), ("new", "official")):
                conn.execute(
                    sa.text(
                        "INSERT INTO model_versions (name, architecture, origin, status, artifacts, metrics, created_at) "
                        "VALUES (:name, 'vit_b', :origin, 'ready', '{}', '{}', CURRENT_TIMESTAMP)"
                    ),
                    {"name": name, "origin": origin},
                )
        upgrade(empty_database_url)
        with engine.connect() as conn:
            flagged = conn.execute(sa.text("SELECT name FROM model_versions WHERE is_default")).scalars().all()
    finally:
        engine.dispose()
    assert flagged == ["new"]
