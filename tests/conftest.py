"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """`../shared/data`: real images with object masks (never copied into the repository)."""
    if not DATA_ROOT.is_dir():
        pytest.skip(f"evaluation data not found at {DATA_ROOT}")
    return DATA_ROOT
