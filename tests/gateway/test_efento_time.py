"""Efento's time endpoint through a real gateway, sandbox, broker and database: GET and
POST on `t` are both answered with the current time, 4 bytes big-endian."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from preservarium.db.engine import make_engine
from preservarium.repositories import SQLParserRepository
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient

from tests.gateway.conftest import Topology
from tests.parsers.support import source


@pytest.fixture(scope="module", autouse=True)
async def efento_on_the_routes(gw_db: str, gw_sandbox: SandboxServer) -> None:
    engine = make_engine(gw_db)
    # The module's gateway routes `m` and `t` to the type "thermo": here it is Efento's parser.
    await SQLParserRepository(engine).upload("thermo", source("efento"))
    await engine.dispose()
    await gw_sandbox.catalog.refresh()


@pytest.mark.parametrize(
    ("method", "body", "code"),
    [(cw.GET, b"", "2.05"), (cw.POST, b"", "2.01"), (cw.POST, b"\xff", "2.01")],
    ids=["get", "post", "post-unreadable-body"],
)
async def test_the_time_endpoint_answers_the_current_time(
    coap: CoapClient, topics: Topology, method: int, body: bytes, code: str
) -> None:
    before = int(time.time())
    response = await coap.call(method, "/t", body)
    after = int(time.time())
    assert response.dotted_code == code
    served = int.from_bytes(response.payload, "big")
    assert len(response.payload) == 4 and before <= served <= after
    raw = (await topics.raw.wait_for(lambda r: r["path"] == "t"))[0]
    parsed = (await topics.parsed.wait_for(lambda r: r["id"] == raw["id"]))[0]
    assert parsed["device_id"] is None  # a time request names no device
    assert parsed["data"] == {
        "message": "time_request", "time_request": True, "current_time": served,
    }  # fmt: skip
    received = datetime.fromisoformat(raw["received_at"].replace("Z", "+00:00"))
    assert int(received.timestamp()) == served
