"""Build, serve and open the decoder harness page in headless Chromium.

Shared by `tests/browser/test_decoder_parity.py` and `benchmarks/click_latency.py`, so that the
parity test and the benchmark exercise the same build of the product's worker
(`frontend/src/inference/`). The page is served by a small static server that sends the
cross-origin isolation headers (COOP same-origin, COEP require-corp) that onnxruntime-web's wasm
threads need, with onnxruntime-web's runtime under `/ort/` (as `frontend/scripts/copy-ort.mjs` lays
it out for the product) and the caller's files (graphs, embedding, image) under `/data/`.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
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


def build_harness(out_dir: Path) -> Path:
    """Build the harness page with the frontend's Vite into `out_dir` (site root) and add `/ort/`.

    Raises RuntimeError with the build's output when frontend/node_modules is missing or the build
    fails.
    """
    vite = FRONTEND / "node_modules" / ".bin" / "vite"
    runtime = FRONTEND / "node_modules" / "onnxruntime-web" / "dist"
    if not vite.exists() or not runtime.is_dir():
        raise RuntimeError(f"{vite} or {runtime} missing: run `npm ci` in frontend/ (scripts/install does)")
    result = subprocess.run(
        [str(vite), "build", "--config", str(HERE / "vite.config.mjs"), "--outDir", str(out_dir)],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"harness build failed:\n{result.stdout}\n{result.stderr}")
    ort_dir = out_dir / "ort"
    ort_dir.mkdir(exist_ok=True)
    for name in ("ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs"):
        shutil.copy2(runtime / name, ort_dir / name)
    (out_dir / "data").mkdir(exist_ok=True)
    return out_dir


class _IsolatedHandler(SimpleHTTPRequestHandler):
    """Static files with cross-origin isolation headers, quiet, never cached."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        pass


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve `root` on 127.0.0.1 (a free port) for the duration of the block; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_IsolatedHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def open_page(base_url: str) -> Iterator[object]:
    """Headless Chromium (the system's, never a downloaded one) on the harness page; yields the page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base_url}/index.html")
            page.wait_for_function("window.h7 !== undefined", timeout=30_000)
            page.errors = errors  # type: ignore[attr-defined]
            yield page
        finally:
            browser.close()
