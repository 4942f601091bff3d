"""Both services serve Prometheus metrics an operator would graph."""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.request
from pathlib import Path

from preservarium.contract.contact import Contact
from preservarium.db.migrate import upgrade
from preservarium.sandbox_client import SandboxClient
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.gateway.conftest import gateway_config
from tests.sandbox.conftest import sandbox_config
from tests.support.kafka import prefix
from tests.support.net import free_port
from tests.support.waiting import until


def parse_errors(gateway: GatewayServer, kind: str) -> float:
    value = gateway.metrics.registry.get_sample_value(
        "preservarium_gateway_parse_errors_total", {"kind": kind}
    )
    return value or 0.0


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def test_metrics_endpoints(tmp_path: Path, broker: EmbeddedBroker) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade(url)
    sandbox_port, gateway_port = free_port(), free_port()
    async with SandboxServer(sandbox_config(url, metrics_port=sandbox_port)) as sandbox:
        async with SandboxClient(sandbox.config.listen) as client:
            source = "def parse(payload, metadata):\n    while True:\n        pass\n"
            await client.test_parser(source, contact=Contact(b"", "x"))
            await client.parse(Contact(b"", "unknown-type"))
        config = gateway_config(
            database_url=url,
            bootstrap=broker.bootstrap,
            sandbox_addr=sandbox.config.listen,
            topic_prefix=prefix(),
        )
        config = dataclasses.replace(config, metrics_port=gateway_port)
        async with (
            GatewayServer(config) as gateway,
            cw.CoapClient("127.0.0.1", config.bind.port) as coap,
        ):
            await coap.call(cw.POST, "/d/nobody", b"x")
            await coap.call(cw.POST, "/m", b"x")
            # The route contact's parse failure is counted once its parse is done.
            await until(lambda: parse_errors(gateway, "parser_not_found") >= 1)
            gateway_text = await asyncio.to_thread(scrape, gateway_port)
        sandbox_text = await asyncio.to_thread(scrape, sandbox_port)
    for name in (
        "preservarium_sandbox_calls_total",
        "preservarium_sandbox_call_seconds_bucket",
        "preservarium_sandbox_timeouts_total",
        "preservarium_sandbox_worker_restarts_total",
        "preservarium_sandbox_cache_lookups_total",
    ):
        assert name in sandbox_text, name
    assert 'outcome="timeout"' in sandbox_text and 'outcome="parser_not_found"' in sandbox_text
    for name in ("preservarium_gateway_contacts_total", "preservarium_gateway_contact_seconds",
                 "preservarium_gateway_kafka_publish_seconds", "preservarium_gateway_parse_errors",
                 "preservarium_gateway_pending_command_devices",
                 "preservarium_gateway_sandbox_call_seconds"):  # fmt: skip
        assert name in gateway_text, name
    assert 'code="4.04"' in gateway_text and 'kind="parser_not_found"' in gateway_text
    for name in ("preservarium_gc_pause_seconds_bucket", "preservarium_event_loop_lag_seconds",
                 "preservarium_gc_frozen_objects"):  # fmt: skip
        assert name in gateway_text and name in sandbox_text, name
