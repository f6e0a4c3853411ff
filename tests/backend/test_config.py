"""Settings defaults for the embedded mode and the persisted secret key."""

from __future__ import annotations

import stat

from backend.core.config import Settings


def test_defaults_live_under_the_data_dir(tmp_path, monkeypatch):
    for name in ("DATAENGINE_DATABASE_URL", "DATAENGINE_STORAGE_ROOT", "DATAENGINE_SECRET_KEY", "DATAENGINE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path / "var")
    assert settings.database_url == f"sqlite:///{(tmp_path / 'var' / 'dataengine.db').resolve()}"
    assert settings.storage_root == tmp_path / "var" / "storage"
    assert settings.model_server_url is None and settings.default_model_arch == "vit_t"
    monkeypatch.setenv("DATAENGINE_MAX_UPLOAD_BYTES", "123")
    assert Settings(data_dir=tmp_path).max_upload_bytes == 123


def test_secret_key_is_generated_once_and_persisted(tmp_path, monkeypatch):
    monkeypatch.delenv("DATAENGINE_SECRET_KEY", raising=False)
    first = Settings(data_dir=tmp_path).ensure_secret_key()
    assert len(first) >= 32
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Settings(data_dir=tmp_path).ensure_secret_key() == first
    assert Settings(data_dir=tmp_path, secret_key="given" * 8).ensure_secret_key() == "given" * 8
