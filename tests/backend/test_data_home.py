"""State does not depend on the working directory: every `dataengine` command, run from any folder,
uses one data home (`DATAENGINE_HOME`, by default the checkout's `var/`), `up` serves the built
frontend found next to the code, user errors are one line on stderr with exit code 2, and `up` says
only what a person needs. Everything runs as subprocesses from a folder that is not the checkout."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from backend.core.config import Settings
from backend.core.db import make_engine, make_session_factory
from backend.projects.service import create_project
from backend.tables import User
from backend.up import last_line, rotate_log
from tests.backend.celery_workers import UpProcess, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINT = Path(sys.executable).with_name("dataengine")


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [str(ENTRY_POINT)] if ENTRY_POINT.is_file() else [sys.executable, "-m", "backend.cli"]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def one_line_error(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and text in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == "", result


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory that is neither the checkout nor the data home."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any DATAENGINE_* variable, plus `extra`."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATAENGINE_")},
        "DATAENGINE_BCRYPT_ROUNDS": "4",
        **extra,
    }


def test_every_command_uses_the_data_home_from_any_folder(tmp_path, elsewhere, data_root):
    home = tmp_path / "home"
    env = clean_env(DATAENGINE_HOME=str(home))
    images = elsewhere / "imgs"
    images.mkdir()
    for path in sorted((data_root / "grabcut" / "images").glob("*.jpg"))[:2]:
        shutil.copyfile(path, images / path.name)

    # Before `migrate`: one line saying what to run, and no empty database left behind.
    one_line_error(run("import-folder", "1", "imgs", cwd=elsewhere, env=env), "database not initialised")
    assert not (home / "dataengine.db").exists()

    assert run("migrate", cwd=elsewhere, env=env).returncode == 0
    created = run("create-user", "mia", "--role", "manager", "--password", "long-enough", cwd=elsewhere, env=env)
    assert created.returncode == 0, created
    engine = make_engine(Settings(data_dir=home).db_url)
    with make_session_factory(engine)() as db:
        manager = db.query(User).filter_by(username="mia").one()  # the CLI wrote to the data home's database
        project_id = create_project(db, manager, "from elsewhere", "").id
    engine.dispose()

    imported = run("import-folder", str(project_id), "imgs", cwd=elsewhere, env=env)  # a folder relative to the cwd
    assert imported.returncode == 0 and "imported 2 images, 0 duplicates, 0 skipped" in imported.stdout, imported
    one_line_error(run("import-folder", "999", "imgs", cwd=elsewhere, env=env), "project 999 not found")
    one_line_error(run("import-folder", str(project_id), "missing", cwd=elsewhere, env=env), "not a directory")
    bad = run("import-folder", "one", "imgs", cwd=elsewhere, env=env)  # argparse: its usage line, then the error
    assert bad.returncode == 2 and "invalid int value: 'one'" in bad.stderr and "Traceback" not in bad.stderr, bad
    one_line_error(run("rebuild-rollups", "--project", "999", cwd=elsewhere, env=env), "no project with id 999")
    one_line_error(
        run("models", "import", "nothing.pth", "--arch", "vit_b", cwd=elsewhere, env=env), "nothing.pth does not exist"
    )

    assert sorted(p.name for p in elsewhere.iterdir()) == ["imgs"]  # nothing was written to the cwd
    assert (home / "storage").is_dir()


def test_the_default_home_is_the_checkouts_var_and_relative_homes_are_made_absolute(elsewhere):
    """`--help` names the data home (and opens nothing), so the default is seen without writing to the checkout."""
    default = run("--help", cwd=elsewhere, env=clean_env())
    assert default.returncode == 0 and f"logs): {REPO_ROOT / 'var'}\n" in default.stdout, default.stdout
    relative = run("--help", cwd=elsewhere, env=clean_env(DATAENGINE_HOME="rel/home"))
    assert f"logs): {elsewhere / 'rel' / 'home'}\n" in relative.stdout, relative.stdout
    old_name = run("--help", cwd=elsewhere, env=clean_env(DATAENGINE_DATA_DIR="/d"))
    assert "logs): /d\n" in old_name.stdout, old_name.stdout  # the older name still works
    both = run("--help", cwd=elsewhere, env=clean_env(DATAENGINE_HOME="/h", DATAENGINE_DATA_DIR="/d"))
    assert "logs): /h\n" in both.stdout, both.stdout
    one_line_error(run("migrate", cwd=elsewhere, env=clean_env(DATAENGINE_BCRYPT_ROUNDS="many")), "bcrypt_rounds")


@pytest.mark.slow
def test_up_from_another_folder_serves_the_app_and_prints_a_short_block(tmp_path, elsewhere):
    index = REPO_ROOT / "frontend" / "dist" / "index.html"
    # scripts/install always builds it: a missing build is a failure of the install, not an absent service.
    assert index.is_file(), f"the frontend is not built ({index}): run scripts/install"
    up = UpProcess(tmp_path, cwd=elsewhere)
    del up.env["DATAENGINE_FRONTEND_DIST"]  # the default: the build next to the code, not ./frontend/dist
    logs = up.data_dir / "logs"
    with up, httpx.Client(base_url=up.base_url, timeout=60) as http:
        page = http.get("/")
        assert page.status_code == 200 and page.text == index.read_text()
        assert http.get("/api/users/me", headers=up.login(http)).json()["username"] == "admin"
        http.get("/api/nothing-here")  # an access-log line, if the access log were on
        wait_for(lambda: "ready." in (logs / "worker.log").read_text(), 120, "the worker to be ready")
        wait_for(lambda: "beat: Starting" in (logs / "beat.log").read_text(), 60, "beat to start")

        block = up.output.text()
        assert "celery@" not in block and "-------------- " not in block and "TracerWarning" not in block, block
        assert "INFO" not in block and "GET /" not in block, block
        for expected in (
            f"serving {up.base_url}",
            str(up.data_dir / "admin-password.txt"),
            "untrained vit_t",
            "meaningless",
            "dataengine models download vit_b",
            "dataengine models import",
            str(logs / "worker.log"),
            str(logs / "beat.log"),
            f"data home: {up.data_dir}",
        ):
            assert expected in block, (expected, block)
        assert block.count("\n") <= 8, block
        assert "celery@" in (logs / "worker.log").read_text()  # the banner went to the log

        # A worker that dies is still reported, naming its log.
        worker = int(up.output.wait_for(r"worker started \(pid (\d+)\)", 1)[0].group(1))
        os.kill(worker, signal.SIGKILL)
        up.output.wait_for(
            rf"worker \(pid {worker}\) exited with code -9; restarting in 1 s; its log "
            + re.escape(f"{logs / 'worker.log'} ends: "),
            10,
        )
        assert up.stop(signal.SIGINT) == []
    assert list(elsewhere.iterdir()) == []

    # A later run: the password file is still named; --verbose prints the worker's banner and the access log.
    with (
        UpProcess(tmp_path, cwd=elsewhere, args=("--verbose",)) as verbose,
        httpx.Client(base_url=verbose.base_url) as http,
    ):
        assert str(up.data_dir / "admin-password.txt") in verbose.output.text()
        verbose.output.wait_for(r"celery@", 120)
        http.get("/api/nothing-here")
        verbose.output.wait_for(r'"GET /api/nothing-here HTTP/1.1" 404', 10)
        assert verbose.stop(signal.SIGTERM) == []
    assert list(elsewhere.iterdir()) == []


def test_each_run_starts_a_fresh_log_and_keeps_the_previous_one(tmp_path):
    log = tmp_path / "logs" / "worker.log"
    assert rotate_log(log) == log and not log.exists()
    log.write_text("run 1\n")
    rotate_log(log).write_text("run 2\n\n")
    rotate_log(log)
    assert (tmp_path / "logs" / "worker.log.1").read_text() == "run 2\n\n" and not log.exists()
    assert last_line(tmp_path / "logs" / "worker.log.1") == "run 2" and last_line(log) == ""
