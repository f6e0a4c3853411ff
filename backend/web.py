"""The browser app: the built frontend (`frontend/dist`) served at `/`, and cross-origin isolation.

Every response carries `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, `Referrer-Policy:
same-origin`, and `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy:
require-corp`: with them the page is cross-origin isolated, which is what lets onnxruntime-web use
SharedArrayBuffer and so more than one wasm thread for the decoder. Everything the page loads comes
from this origin (the app, `/ort/` wasm runtime, `/api/` data), so the policy costs nothing.

Paths that are not files of the build get `index.html` (the app routes them in the browser), except
under `/api/`, which stays a JSON 404. Hashed Vite assets are immutable; `index.html` is revalidated so
a new build is picked up at once.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = [
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
    # No MIME sniffing of uploads, no framing of the app by other sites, no URLs leaked to others.
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeadersMiddleware:
    """Pure ASGI (no body buffering), so streaming responses such as SSE pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_web(app: FastAPI, dist: Path) -> None:
    """Add the security headers and, if `dist` holds a build, serve it. Call after every API router."""
    app.add_middleware(SecurityHeadersMiddleware)
    dist = dist.resolve()
    index = dist / "index.html"

    @app.get("/{path:path}", include_in_schema=False)
    def frontend(path: str) -> FileResponse:
        if "\x00" in path:  # no file has such a name (and Path refuses it with a ValueError)
            raise HTTPException(status_code=404, detail="no such file")
        if path == "api" or path.startswith("api/"):
            raise HTTPException(status_code=404, detail=f"no API route /{path}")
        if not index.is_file():
            raise HTTPException(
                status_code=404,
                detail=f"the frontend is not built ({dist} has no index.html): run `npm run build` in frontend/",
            )
        file = (dist / path).resolve()
        if path and file.is_file() and file.is_relative_to(dist):
            cache = "public, max-age=31536000, immutable" if path.startswith("assets/") else "public, max-age=3600"
            return FileResponse(file, headers={"Cache-Control": cache})
        return FileResponse(index, headers={"Cache-Control": "no-cache"})
