"""A live Data Engine and a real headless Chromium, built once per test session.

- `live_server`: the app (`create_app`) under uvicorn in a thread on a free port, with a migrated
  SQLite database and storage in a temporary folder, the built frontend (`frontend/dist`, built here
  with npm if missing), an admin user and a project holding one real photograph from
  ../shared/data/grabcut. Embedded mode: the model runs in process (untrained vit_t, random weights).
- `browser`: Chromium from /usr/bin/chromium through Playwright's sync API, one per test module (a
  running sync Playwright blocks any other in the process, e.g. the decoder harness of
  test_decoder_parity.py); the browser tests skip, with the reason, only when that binary is missing.
- `page`: a fresh browser context and page per test, logged out.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from backend.core.config import Settings
from tests.live_app import live_app

REPO = Path(__file__).resolve().parents[2]
FRONTEND = REPO / "frontend"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IMAGE_NAME = "106024.jpg"


@dataclass(frozen=True)
class LiveServer:
    url: str
    settings: Settings
    token: str
    project_id: int
    image_id: int
    object_point: tuple[float, float]  # (x, y) deep inside the ground-truth object, original pixels
    background_point: tuple[float, float]  # (x, y) far from it

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120)


def _ensure_frontend_built() -> Path:
    dist = FRONTEND / "dist"
    if (dist / "index.html").is_file() and (dist / "ort").is_dir():
        return dist
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("frontend/dist is not built and npm is not installed")
    if not (FRONTEND / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=FRONTEND, check=True)
    subprocess.run([npm, "run", "build"], cwd=FRONTEND, check=True)
    return dist


def _inside_and_outside(mask_path: Path) -> tuple[tuple[float, float], tuple[float, float]]:
    """The object pixel farthest from its boundary, and the background pixel farthest from the object."""
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(Image.open(mask_path).convert("L")) > 128
    inside = np.unravel_index(np.argmax(distance_transform_edt(mask)), mask.shape)
    outside = np.unravel_index(np.argmax(distance_transform_edt(~mask)), mask.shape)
    return (float(inside[1]), float(inside[0])), (float(outside[1]), float(outside[0]))


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[LiveServer]:
    dist = _ensure_frontend_built()
    var = tmp_path_factory.mktemp("live")
    settings = Settings(
        data_dir=var,
        database_url=f"sqlite:///{var / 'dataengine.db'}",
        secret_key="browser-test-secret-" + "x" * 32,
        bcrypt_rounds=4,
        frontend_dist=dist,
        outbound_allowed_networks=["127.0.0.0/8"],  # the tests' webhook receiver listens on loopback
    )
    with live_app(settings) as app, httpx.Client(base_url=app.url, timeout=120, headers=app.auth) as http:
        project = (
            http.post("/api/projects", json={"name": "GrabCut", "description": "browser test"})
            .raise_for_status()
            .json()
        )
        image_file = data_root / "grabcut" / "images" / IMAGE_NAME
        uploaded = (
            http.post(
                f"/api/projects/{project['id']}/images",
                files=[("files", (IMAGE_NAME, image_file.read_bytes(), "image/jpeg"))],
            )
            .raise_for_status()
            .json()
        )
        inside, outside = _inside_and_outside(data_root / "grabcut" / "masks" / f"{Path(IMAGE_NAME).stem}__0.png")
        yield LiveServer(app.url, settings, app.token, project["id"], uploaded["images"][0]["id"], inside, outside)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Chromium (scripts/install --test does) to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield page
    context.close()
