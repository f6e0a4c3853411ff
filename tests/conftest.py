"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The S3 server fixtures (`s3_server`, `s3_bucket`) for every test package.
pytest_plugins = ["tests.s3_server"]

REPO = Path(__file__).resolve().parents[1]
# The evaluation data lives beside the repository (../shared/data) and is never copied into it;
# DATAENGINE_DATA_ROOT points elsewhere when a checkout sits in another place.
DATA_ROOT = Path(os.environ.get("DATAENGINE_DATA_ROOT", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """`../shared/data`: real images with object masks (grabcut, davis345)."""
    if not DATA_ROOT.is_dir():
        pytest.skip(f"evaluation data not found at {DATA_ROOT} (set DATAENGINE_DATA_ROOT)")
    return DATA_ROOT
