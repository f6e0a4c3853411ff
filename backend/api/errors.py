"""One error shape for every 4xx the API sends, documented in the OpenAPI of every route.

Every error body is `ErrorOut`: ``detail`` is always one human-readable string (what the pages show
as is), and ``errors`` lists the individual problems of a request that failed validation (location,
message, type), empty otherwise. FastAPI's own validation answer (``detail`` as an array, with the
offending ``input`` echoed back) is replaced: echoing the input could not even be encoded for a body
holding ``NaN`` (a 500 in place of a 422), and two shapes for one ``detail`` confused clients.

`ERROR_RESPONSES` is passed to every router by `create_app`, so 400, 401, 403, 404, 409, 413, 422 and 429 are in
the schema of every operation and response-conformance checks (the schema fuzzer) hold.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    detail: str
    errors: list[ErrorItem] = []


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in {
        400: "the body cannot be parsed (not the JSON or form the operation reads)",
        401: "not logged in, or the token is invalid, expired or revoked",
        403: "logged in, but the role (in this project) does not allow it",
        404: "no such object, or it belongs to a project the caller is not a member of",
        409: "the object's state does not allow it now (the message says why)",
        413: "the request body or upload is larger than the configured limit",
        422: "the request is malformed or out of bounds (`errors` lists each problem)",
        429: "too many attempts; retry after the `Retry-After` header's seconds",
    }.items()
}


def _loc_text(loc: list[str | int]) -> str:
    return ".".join(str(part) for part in loc if part not in ("body", "query", "path")) or "request"


def _validation_items(exc: RequestValidationError) -> list[ErrorItem]:
    return [
        ErrorItem(
            loc=[p if isinstance(p, int) else str(p) for p in error.get("loc", ())],
            msg=str(error.get("msg", "invalid")),
            type=str(error.get("type", "value_error")),
        )
        for error in exc.errors()
    ]


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # registered for that class only (Starlette types it wider)
    items = _validation_items(exc)
    detail = "; ".join(f"{_loc_text(item.loc)}: {item.msg}" for item in items) or "invalid request"
    return JSONResponse(ErrorOut(detail=detail, errors=items).model_dump(), status_code=422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # registered for that class only
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(
        ErrorOut(detail=detail).model_dump(), status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
