"""From *Done, next* to the next image ready, and its first click, on the real annotate page and API.

Two servers in this process (uvicorn threads, the app of this checkout, each with its own SQLite
database and storage, embedded mode: untrained vit_t, split decoder), one serving this checkout's
frontend build (frontend/dist) and one the previous page's build (``--before-dist``: the commit
before the annotate session, built as below); each gets a project of the same N grabcut photographs
whose embeddings are computed before the browser opens (the embed endpoint, on demand). Headless
Chromium (/usr/bin/chromium, Playwright) opens /annotate/<project> on each, and per image:

1. after ``--dwell`` seconds (the annotator works on it), clicks *Done, next*; measured: from the
   click event to the next image's file name shown with the decoder status ``data-ready``;
2. clicks the image's centre (the mouse moved there from the side panel, as an annotator's would);
   measured: from the pointerdown event to the animation frame after the candidates appear (the
   mask is drawn in the same task);
3. Esc, the mouse back to the side panel, and the same click again: a warm click, for comparison.

The pages run alternately, image by image, so that load from other processes on the machine hits
both alike. Before: ``git worktree add /tmp/switch-before dcfbcb4 && cd /tmp/switch-before/frontend
&& npm ci && npm run build`` (or a symlink to frontend/node_modules when package-lock.json is the same).

Usage: .venv/bin/python benchmarks/image_switch.py [--images 20] [--dwell 2] [--before-dist /tmp/switch-before/frontend/dist]
Prints a markdown table: p50 / p95 per page.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from backend.core.config import Settings  # noqa: E402
from tests.live_app import live_app  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "grabcut" / "images"
CHROMIUM = Path("/usr/bin/chromium")

# Timestamps in the page (they survive the previous page's rebuilds: it is one document).
INSTRUMENT = """
window.__switch = { expect: null, doneAt: 0, readyAt: 0, pressAt: 0, drawnAt: 0, armed: false };
document.addEventListener('click', (e) => {
  if (e.target.closest?.('button')?.textContent.includes('Done, next')) window.__switch.doneAt = e.timeStamp;
}, true);
document.addEventListener('pointerdown', (e) => {
  if (e.target.id === 'ui' && window.__switch.armed) window.__switch.pressAt = e.timeStamp;
}, true);
new MutationObserver(() => {
  const s = window.__switch;
  if (s.expect && !s.readyAt
      && document.querySelector('[data-testid=file-name]')?.textContent === s.expect
      && document.querySelector('[data-testid=decoder-status][data-ready=true]')) s.readyAt = performance.now();
  if (s.armed && s.pressAt && !s.drawnAt && document.querySelector('.candidates button')) {
    s.armed = false;
    requestAnimationFrame(() => { s.drawnAt = performance.now(); });
  }
}).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
"""


@dataclass
class Site:
    name: str
    url: str
    token: str
    project_id: int
    file_names: list[str]


@contextlib.contextmanager
def serve(name: str, dist: Path, workdir: Path, images: list[Path]) -> Iterator[Site]:
    """The app on a free port with `dist` as its frontend, an admin and a project of `images` (embedded)."""
    var = workdir / name
    var.mkdir()
    settings = Settings(
        data_dir=var,
        database_url=f"sqlite:///{var / 'dataengine.db'}",
        secret_key="image-switch-benchmark-" + "x" * 32,
        bcrypt_rounds=4,
        frontend_dist=dist,
    )
    with live_app(settings) as app, httpx.Client(base_url=app.url, timeout=600, headers=app.auth) as http:
        project = http.post("/api/projects", json={"name": f"switch {name}"}).raise_for_status().json()
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in images]
        uploaded = http.post(f"/api/projects/{project['id']}/images", files=files).raise_for_status().json()
        ids = [i["id"] for i in uploaded["images"]]
        with ThreadPoolExecutor(2) as pool:  # precomputed embeddings: what the embed job leaves
            list(pool.map(lambda i: http.get(f"/api/images/{i}/embedding").raise_for_status(), ids))
        yield Site(name, app.url, app.token, project["id"], [i["file_name"] for i in uploaded["images"]])


def open_page(browser, site: Site):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.add_init_script(INSTRUMENT)
    page.goto(site.url + "/login")
    page.evaluate("t => localStorage.setItem('dataengine.token', t)", site.token)
    page.goto(f"{site.url}/annotate/{site.project_id}")
    page.wait_for_selector("[data-testid=decoder-status][data-ready=true]", timeout=300_000)
    return page


def click_ms(page, point: tuple[float, float], rest: tuple[float, float]) -> float:
    page.mouse.move(*rest)
    page.evaluate("() => Object.assign(window.__switch, { armed: true, pressAt: 0, drawnAt: 0 })")
    page.mouse.click(*point)
    page.wait_for_function("window.__switch.drawnAt > 0", timeout=60_000)
    return page.evaluate("window.__switch.drawnAt - window.__switch.pressAt")


def step(page, next_name: str, dwell: float) -> dict[str, float]:
    """One image: dwell, Done next, ready; first click; warm click. Milliseconds."""
    time.sleep(dwell)
    done = page.locator("button", has_text="Done, next")
    button = done.bounding_box()
    rest = (button["x"] + button["width"] / 2, button["y"] + button["height"] / 2)
    page.evaluate("n => Object.assign(window.__switch, { expect: n, doneAt: 0, readyAt: 0 })", next_name)
    done.click()
    page.wait_for_function("window.__switch.readyAt > 0", timeout=300_000)
    ready = page.evaluate("window.__switch.readyAt - window.__switch.doneAt")
    box = page.locator("#ui").bounding_box()
    point = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    first = click_ms(page, point, rest)
    page.keyboard.press("Escape")
    page.wait_for_function("!document.querySelector('.candidates button')")
    warm = click_ms(page, point, rest)
    page.keyboard.press("Escape")
    return {"ready": ready, "first": first, "warm": warm}


def table(results: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        "| page | switches | Done, next → ready p50 / p95 (ms) | first click → drawn p50 / p95 (ms) "
        "| warm click p50 (ms) | first / warm (p50) |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        col = {k: np.array([r[k] for r in rows]) for k in ("ready", "first", "warm")}
        r50, r95 = np.percentile(col["ready"], [50, 95])
        f50, f95 = np.percentile(col["first"], [50, 95])
        w50 = np.percentile(col["warm"], 50)
        lines.append(
            f"| {name} | {len(rows)} | {r50:.0f} / {r95:.0f} | {f50:.0f} / {f95:.0f} | {w50:.0f} | {f50 / w50:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--dwell", type=float, default=2.0, help="seconds on each image before Done, next")
    parser.add_argument("--before-dist", type=Path, default=Path("/tmp/switch-before/frontend/dist"))
    args = parser.parse_args()
    after_dist = REPO / "frontend" / "dist"
    for dist in (after_dist, args.before_dist):
        if not (dist / "index.html").is_file():
            sys.exit(f"{dist} is not built (see this file's docstring)")
    images = sorted(DATA.glob("*.jpg"))[: args.images]
    start, load_before = time.time(), os.getloadavg()[0]
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        sites = [
            stack.enter_context(serve("before (dcfbcb4)", args.before_dist, Path(tmp), images)),
            stack.enter_context(serve("after (this checkout)", after_dist, Path(tmp), images)),
        ]
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        pages = [open_page(browser, site) for site in sites]
        results: dict[str, list[dict[str, float]]] = {site.name: [] for site in sites}
        for i in range(1, len(images)):
            for site, page in zip(sites, pages):
                results[site.name].append(step(page, site.file_names[i], args.dwell))
        browser.close()
    print(table(results))
    print(
        f"\n{len(images) - 1} switches per page over {len(images)} grabcut images (embeddings precomputed), "
        f"dwell {args.dwell} s per image, untrained vit_t split decoder, headless Chromium; load average "
        f"{load_before:.1f} → {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {time.time() - start:.0f} s."
    )


if __name__ == "__main__":
    main()
