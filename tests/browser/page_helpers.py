"""Reading the annotate page from a Playwright test: overlay pixels, and image pixels to page points.
Shared by the annotate-page browser tests."""

from __future__ import annotations

DECODER_TIMEOUT_MS = 180_000  # first open: the embedding is computed on demand, the decoder loaded


def opaque_pixels(page, canvas_id: str) -> int:
    return page.evaluate(
        """(id) => {
            const c = document.getElementById(id);
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
            return n;
        }""",
        canvas_id,
    )


def wait_for_pixels(page, canvas_id: str, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(
        """(id) => {
            const c = document.getElementById(id);
            if (!c || !c.width) return false;
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return true;
            return false;
        }""",
        arg=canvas_id,
        timeout=timeout_ms,
    )


def client_point(page, image_size: tuple[int, int], point: tuple[float, float]) -> tuple[float, float]:
    """Original image pixels -> page coordinates over the interaction canvas."""
    box = page.locator("#ui").bounding_box()
    height, width = image_size
    return box["x"] + (point[0] + 0.5) / width * box["width"], box["y"] + (point[1] + 0.5) / height * box["height"]


def record_save_statuses(page) -> None:
    """Keeps every text the save status shows in `window.saveStatuses`. A retry replaces "not saved
    yet" after half a second, shorter than a polling wait can promise to see on a loaded machine."""
    page.evaluate(
        """() => {
            const status = document.querySelector('.save-status');
            window.saveStatuses = [];
            new MutationObserver(() => window.saveStatuses.push(status.textContent))
                .observe(status, { childList: true, characterData: true, subtree: true });
        }"""
    )


def wait_for_save_after_retry(page, timeout_ms: int = 60_000) -> list[str]:
    """Waits until the save status says "saved"; asserts "not saved yet" was shown before it."""
    page.wait_for_function("document.querySelector('.save-status')?.textContent === 'saved'", timeout=timeout_ms)
    statuses = page.evaluate("window.saveStatuses")
    assert any(s.startswith("not saved yet") for s in statuses[: statuses.index("saved")]), statuses
    return statuses


def log_in(page, url: str, username: str, password: str) -> None:
    """Logs in through the login page and waits for the frame of the projects page."""
    page.goto(url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-nav=projects][aria-current=page]")


def session_token(page) -> str:
    """The bearer token the page holds (for checking what it did through the API)."""
    return page.evaluate("localStorage.getItem('dataengine.token')")
