"""`dataengine create-user`, `import-folder`, `migrate` against the database of `Settings()`."""

from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from backend.cli import main
from backend.models import Image, Role, User


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", settings.db_url)
    monkeypatch.setenv("DATAENGINE_DATA_DIR", str(settings.data_dir))
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
