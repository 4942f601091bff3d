"""Device attributes are bounded when written, on PostgreSQL and SQLite, and every write
moves the registry revision that gateways watch."""

from __future__ import annotations

import pytest
from preservarium.attributes import (
    MAX_ATTRIBUTES_BYTES,
    MAX_ATTRIBUTES_DEPTH,
    InvalidAttributesError,
    checked_attributes,
    decode_attributes,
    encode_attributes,
)
from preservarium.errors import NotFoundError
from preservarium.repositories import SQLDeviceRepository
from sqlalchemy.ext.asyncio import AsyncEngine


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


class TestBounds:
    def test_the_deepest_and_largest_allowed_pass(self) -> None:
        assert checked_attributes(nested(MAX_ATTRIBUTES_DEPTH)) == nested(MAX_ATTRIBUTES_DEPTH)
        room = MAX_ATTRIBUTES_BYTES - len(encode_attributes({"k": ""}))
        assert checked_attributes({"k": "x" * room})

    @pytest.mark.parametrize(
        "value",
        [
            nested(MAX_ATTRIBUTES_DEPTH + 1),
            {"k": [[[[[[[[1]]]]]]]]},
            {"k": "x" * MAX_ATTRIBUTES_BYTES},
            {"k": "\u00e9" * (MAX_ATTRIBUTES_BYTES // 2)},  # counted in UTF-8 bytes
            {"k": float("nan")},
            {"k": float("inf")},
            {"k": "\ud800"},
            {1: "x"},
            {"k": (1, 2)},
            {"k": b"x"},
            [1, 2],
            "text",
        ],
        ids=lambda value: type(value).__name__,
    )
    def test_what_cannot_travel_is_refused(self, value: object) -> None:
        with pytest.raises(InvalidAttributesError):
            checked_attributes(value)

    @pytest.mark.parametrize("text", ["[1]", "NaN", '{"k": NaN}', "{", '"x"'])
    def test_text_that_is_not_a_strict_object_is_refused(self, text: str) -> None:
        with pytest.raises(InvalidAttributesError):
            decode_attributes(text)

    def test_empty_text_is_no_attributes(self) -> None:
        assert decode_attributes("") == {}
        assert decode_attributes(encode_attributes({"a": [1, {"b": None}]})) == {
            "a": [1, {"b": None}]
        }


async def test_oversized_or_deep_attributes_are_refused_and_nothing_is_stored(
    engine: AsyncEngine,
) -> None:
    devices = SQLDeviceRepository(engine)
    with pytest.raises(InvalidAttributesError, match="deeper than 8"):
        await devices.register("d1", "efento", attributes=nested(9))
    with pytest.raises(InvalidAttributesError, match="over the limit"):
        await devices.register("d1", "efento", attributes={"k": "x" * MAX_ATTRIBUTES_BYTES})
    assert await devices.list() == []
    await devices.register("d1", "efento", attributes={"site": "a"})
    with pytest.raises(InvalidAttributesError):
        await devices.update_attributes("d1", set_={"deep": nested(MAX_ATTRIBUTES_DEPTH)})
    assert (await devices.get("d1")).attributes == {"site": "a"}


async def test_attribute_updates_merge_unset_and_replace(engine: AsyncEngine) -> None:
    devices = SQLDeviceRepository(engine)
    await devices.register("d1", "efento", attributes={"a": "1", "b": "2"})
    record = await devices.update_attributes("d1", set_={"c": {"x": 1}}, unset=("a", "zz"))
    assert record.attributes == {"b": "2", "c": {"x": 1}}
    assert (await devices.get("d1")).attributes == {"b": "2", "c": {"x": 1}}
    replaced = await devices.update_attributes("d1", set_={"n": 1}, replace=True)
    assert replaced.attributes == {"n": 1}
    with pytest.raises(NotFoundError):
        await devices.update_attributes("nobody", set_={"a": 1})


async def test_every_registry_write_moves_the_revision(engine: AsyncEngine) -> None:
    devices = SQLDeviceRepository(engine)
    seen = [await devices.revision()]
    await devices.register("d1", "efento")
    seen.append(await devices.revision())
    await devices.update_attributes("d1", set_={"a": 1})
    seen.append(await devices.revision())
    await devices.change_type("d1", "dragino")
    seen.append(await devices.revision())
    from preservarium.identity import SecretBox
    from preservarium.identity.kinds import AuthKind
    from preservarium.repositories import SQLCredentialRepository

    credentials = SQLCredentialRepository(engine, secrets=SecretBox.from_setting(None))
    await credentials.set_credentials("d1", AuthKind.TOKEN)
    seen.append(await devices.revision())
    await devices.remove("d1")
    seen.append(await devices.revision())
    assert seen == sorted(set(seen)), seen  # strictly growing
