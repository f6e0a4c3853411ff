"""`dataengine up` on a fresh data dir: the first admin's password in a private file (never printed),
a private database, the app served, a real worker on the embedded SQLite broker embeds an uploaded
image, Ctrl-C stops everything and leaves no process behind. And `dataengine models`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from backend.cli import main as dataengine
from model_server.sam.build import build_sam
from tests.backend.celery_workers import UpProcess, up_environment

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_up_serves_embeds_with_a_real_worker_and_stops_cleanly(tmp_path, data_root):
    with UpProcess(tmp_path) as up:
        password_file = up.data_dir / "admin-password.txt"
        password = password_file.read_text().strip()
        assert password and password not in up.output.text()
        assert str(password_file) in up.output.text()
        assert _mode(password_file) == 0o600 and _mode(up.data_dir) == 0o700
        assert _mode(up.data_dir / "dataengine.db") == 0o600
        with httpx.Client(base_url=up.base_url, timeout=60) as http:
            headers = up.login(http)
            project = http.post("/api/projects", json={"name": "up"}, headers=headers).json()
            image = (data_root / "grabcut" / "images" / "106024.jpg").read_bytes()
            upload = http.post(
                f"/api/projects/{project['id']}/images",
                files=[("files", ("a.jpg", image, "image/jpeg"))],
                headers=headers,
            )
            assert upload.status_code == 201, upload.text
            assert http.get(f"/api/projects/{project['id']}/model", headers=headers).json()["origin"] == "untrained"
            started = http.post(f"/api/projects/{project['id']}/embed", headers=headers)
            assert started.status_code == 202, f"{started.text}\noutput:\n{up.output.text()}"
            job = started.json()
            deadline = time.monotonic() + 300
            while job["status"] not in ("succeeded", "failed", "cancelled"):
                assert time.monotonic() < deadline, f"job stuck: {job}\noutput:\n{up.output.text()}"
                time.sleep(1)
                job = http.get(f"/api/jobs/{job['id']}", headers=headers).json()
            assert job["status"] == "succeeded" and job["result"]["embedded"] == 1, job
        assert len(up.tree()) >= 3, up.tree()  # up, the worker, beat
        # What Ctrl-C in the terminal sends: to up's process group (the children have their own).
        assert up.stop(signal.SIGINT) == []

    # The admin and the default model are there for the next start.
    again = subprocess.run(
        [sys.executable, "-m", "backend.cli", "models", "list"],
        cwd=REPO_ROOT,
        env=up_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0 and "untrained vit_t" in again.stdout and again.stdout.count("\n") == 1


def test_models_import_is_strict_and_idempotent(tmp_path, monkeypatch, capsys):
    for key, value in up_environment(tmp_path).items():
        if key.startswith("DATAENGINE_"):
            monkeypatch.setenv(key, value)
    assert dataengine(["migrate"]) == 0
    checkpoint = tmp_path / "sam_vit_t_test.pth"
    torch.save(build_sam("vit_t", seed=7).state_dict(), checkpoint)
    assert dataengine(["models", "import", str(checkpoint), "--arch", "vit_t"]) == 0
    assert "imported model version 1" in capsys.readouterr().out
    assert dataengine(["models", "import", str(checkpoint), "--arch", "vit_t"]) == 0
    assert "already registered as model version 1" in capsys.readouterr().out
    assert dataengine(["models", "import", str(checkpoint), "--arch", "vit_b"]) == 2
    assert "does not match SAM vit_b" in capsys.readouterr().err
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    assert dataengine(["models", "import", str(truncated), "--arch", "vit_t"]) == 2
    assert "truncated.pth" in capsys.readouterr().err
    assert dataengine(["models", "list"]) == 0
    assert "official" in capsys.readouterr().out
