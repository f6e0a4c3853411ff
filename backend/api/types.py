"""Bounded scalar types for request fields, so no value can be out of range for the database.

A larger integer in a path, query or body used to reach the driver and fail there (a 500): SQLite
stores 64 bits (`OverflowError` above 2^63−1), and the id columns are PostgreSQL `integer`, 32 bits
(psycopg binds an id as `::INTEGER`, out of range above 2^31−1). Every id, offset and id cursor the
API accepts is bounded by `MAX_DB_ID` (2^31−1: `PathId` in paths, `DbId` in bodies, `le=MAX_DB_ID` in
queries); `tests/backend/test_api_schema.py` fails for any integer in the OpenAPI without bounds
inside 64 bits.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_DB_ID = 2**31 - 1

DbId = Annotated[int, Field(ge=1, le=MAX_DB_ID, strict=True)]
PathId = Annotated[int, Path(ge=1, le=MAX_DB_ID)]


def lax(**kwargs: Any) -> Any:
    """A `Field` that takes the enum's string values in a strict `RequestModel` (see there)."""
    return Field(strict=False, **kwargs)


class _NoNulStrings(BaseModel):
    """Refuses a NUL character in any string field: PostgreSQL text cannot hold one, so it would
    fail in the driver (a 500) wherever the value reaches a query, and no name or id needs it."""

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value


class FormModel(_NoNulStrings):
    """The base of form bodies (the OAuth2 login): fields nobody declared are ignored, as OAuth2
    clients send `grant_type` and `scope`."""


class RequestModel(_NoNulStrings):
    """The base of every JSON body the API reads: unknown keys are refused, not dropped (a typo in a
    parameter name is an error, not a silent default); types are strict (`false` is not 0, `"240"`
    is not 240: a client sending the wrong type learns it); `NaN` and infinities are refused.

    FastAPI validates a parsed body in pydantic's Python mode, where a strict enum field wants an enum
    instance: declare enum fields with `Field(strict=False)` (`lax()`): their string values are accepted, nothing else."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
