"""Values a database cannot hold are a RepositoryError that is not retriable (the same
value fails again), never a bare driver or codec exception."""

from __future__ import annotations

from datetime import timedelta

import pytest
from preservarium.db.models import utcnow
from preservarium.errors import ConflictError, DatabaseUnavailableError, RepositoryError
from preservarium.repositories import SQLCommandRepository
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.mark.parametrize(
    ("request_id", "name", "body"),
    [
        ("r\ud800", "c", "{}"),
        ("r", "c\udfff", "{}"),
        ("r", "c", '{"params":{"a":"\udc80"}}'),
    ],
)
async def test_text_the_driver_cannot_encode_is_a_repository_error(
    engine: AsyncEngine, request_id: str, name: str, body: str
) -> None:
    commands = SQLCommandRepository(engine)
    with pytest.raises(RepositoryError) as caught:
        await commands.add(request_id=request_id, device_id="d1", name=name, body=body,
                           expires_at=utcnow() + timedelta(hours=1))  # fmt: skip
    assert not isinstance(caught.value, ConflictError | DatabaseUnavailableError)
    assert not getattr(caught.value, "retriable", False)
    stored = await commands.add(request_id="ok", device_id="d1", name="c", body="{}",
                                expires_at=utcnow() + timedelta(hours=1))  # fmt: skip
    assert stored.request_id == "ok"
