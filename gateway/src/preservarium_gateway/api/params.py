"""Integers a client puts in a path or a query, bounded by what the database's columns
hold: a number out of range is a 422 problem, never an overflow in the database driver."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

INT32_MAX = 2**31 - 1  # an Integer column on PostgreSQL
INT64_MAX = 2**63 - 1  # a BigInteger column, and any SQLite integer

VersionNumber = Annotated[int, Path(ge=1, le=INT32_MAX, description="A version number.")]
OtherVersion = Annotated[
    int | None, Query(ge=1, le=INT32_MAX, description="Also diff from this version.")
]
AuditCursor = Annotated[
    int | None, Query(ge=1, le=INT64_MAX, description="next_before of the previous page.")
]
