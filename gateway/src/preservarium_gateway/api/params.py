"""What a client puts in a path or a query, bounded by what the database's columns hold:
a number out of range, or text with a NUL character (PostgreSQL text cannot hold U+0000),
is a 422 problem, never an error in the database driver."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Request

from preservarium_gateway.api.problems import Problem

INT32_MAX = 2**31 - 1  # an Integer column on PostgreSQL
INT64_MAX = 2**63 - 1  # a BigInteger column, and any SQLite integer

VersionNumber = Annotated[int, Path(ge=1, le=INT32_MAX, description="A version number.")]
OtherVersion = Annotated[
    int | None, Query(ge=1, le=INT32_MAX, description="Also diff from this version.")
]
AuditCursor = Annotated[
    int | None, Query(ge=1, le=INT64_MAX, description="next_before of the previous page.")
]


async def no_nul_characters(request: Request) -> None:
    """An app-wide dependency: 422 when a path parameter or a query value holds U+0000."""
    given = [(f"path.{k}", v) for k, v in request.path_params.items() if isinstance(v, str)]
    given += [(f"query.{k}", v) for k, v in request.query_params.multi_items()]
    errors = [{"field": field, "message": "holds a NUL character"}
              for field, value in given if "\x00" in value]  # fmt: skip
    if errors:
        raise Problem(422, "invalid-input", "the request holds a NUL character", errors=errors)
