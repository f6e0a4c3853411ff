"""`dataengine create-user`, `set-password`, `deactivate-user`/`activate-user`, `import-folder`, `migrate`
against the database of `Settings()`."""

from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from backend.cli import main
from backend.tables import Image, Role, User
from tests.backend.conftest import TEST_PASSWORD


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", settings.db_url)
    monkeypatch.setenv("DATAENGINE_HOME", str(settings.data_dir))
    monkeypatch.setenv("DATAENGINE_BCRYPT_ROUNDS", "4")
    return settings


def test_migrate_is_idempotent(env, capsys):
    assert main(["migrate"]) == 0
    assert "head" in capsys.readouterr().out


def test_create_user_then_log_in(env, client, db, capsys):
    assert main(["create-user", "carol", "--role", "manager", "--password", "long-enough"]) == 0
    assert "created user 'carol'" in capsys.readouterr().out
    assert db.scalar(select(User).where(User.username == "carol")).role == Role.manager
    assert client.post("/api/auth/token", data={"username": "carol", "password": "long-enough"}).status_code == 200
    assert main(["create-user", "carol", "--password", "long-enough"]) == 2
    assert "taken" in capsys.readouterr().err
    assert main(["create-user", "dave", "--password", "short"]) == 2


def test_create_user_reads_the_password_from_stdin(env, db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin-pass\n"))
    assert main(["create-user", "erin"]) == 0
    assert db.scalar(select(User).where(User.username == "erin")) is not None


def test_create_user_validates_like_the_api(env, client, admin_headers, capsys):
    """Before, the CLI created names the API refuses; both now validate with `UserCreate`."""
    for username, password in (
        ("has space", "long-enough"),
        ("", "long-enough"),
        ("x" * 151, "long-enough"),
        ("frank", "é" * 40),
        ("frank", "short"),
    ):
        assert main(["create-user", username, "--password", password]) == 2, username
        api = client.post("/api/users", headers=admin_headers, json={"username": username, "password": password})
        assert api.status_code == 422, username
    err = capsys.readouterr().err
    assert (
        "username: String should match pattern" in err
        and "password: Value error, password must be at most 72 bytes" in err
    )


def test_set_password_from_stdin_revokes_tokens(env, client, make_user, login, monkeypatch, capsys):
    headers = login(make_user(Role.annotator, "gina"))
    monkeypatch.setattr("sys.stdin", io.StringIO("a fresh passphrase\n"))
    assert main(["set-password", "gina"]) == 0
    assert "password of 'gina' changed" in capsys.readouterr().out
    assert client.get("/api/users/me", headers=headers).status_code == 401
    assert (
        client.post("/api/auth/token", data={"username": "gina", "password": "a fresh passphrase"}).status_code == 200
    )

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["set-password", "gina"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("a fresh passphrase\n"))
    assert main(["set-password", "nobody"]) == 2
    assert "user 'nobody' not found" in capsys.readouterr().err


def test_deactivate_and_activate_user(env, client, make_user, login, capsys):
    headers = login(make_user(Role.annotator, "hank"))
    assert main(["deactivate-user", "hank"]) == 0
    assert "user 'hank' deactivated" in capsys.readouterr().out
    assert client.get("/api/users/me", headers=headers).status_code == 401
    assert client.post("/api/auth/token", data={"username": "hank", "password": TEST_PASSWORD}).status_code == 401
    assert main(["activate-user", "hank"]) == 0
    assert client.post("/api/auth/token", data={"username": "hank", "password": TEST_PASSWORD}).status_code == 200
    assert main(["deactivate-user", "nobody"]) == 2


def test_import_folder_stores_good_files_and_lists_the_rest(env, project, image_path, tmp_path, db, capsys):
    folder = tmp_path / "incoming"
    (folder / "sub").mkdir(parents=True)
    shutil.copyfile(image_path, folder / "a.jpg")
    shutil.copyfile(image_path, folder / "sub" / "a_copy.jpg")
    PILImage.new("RGB", (30, 20), (0, 128, 255)).save(folder / "b.png")
    (folder / "notes.jpg").write_text("not an image")
    (folder / "readme.txt").write_text("ignored: not an image suffix")

    assert main(["import-folder", str(project.id), str(folder)]) == 0
    captured = capsys.readouterr()
    assert "imported 2 images, 1 duplicates, 1 skipped" in captured.out
    assert "notes.jpg" in captured.err
    names = sorted(db.scalars(select(Image.file_name).where(Image.project_id == project.id)))
    assert names == ["a.jpg", "b.png"]
    # importing again stores nothing new
    assert main(["import-folder", str(project.id), str(folder)]) == 0
    assert "imported 0 images, 3 duplicates" in capsys.readouterr().out


def test_import_folder_errors(env, project, tmp_path, capsys):
    assert main(["import-folder", "999999", str(tmp_path)]) == 2
    assert "project 999999 not found" in capsys.readouterr().err
    assert main(["import-folder", str(project.id), str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
