"""The naive design: the same gateway, but the parser exec'd in the gateway's own process.

No sandbox, no RestrictedPython, no limits: what a first version would do, and what
isolation is measured against. `python -m bench.naive` runs such a gateway with the
usual PRESERVARIUM_* settings; its parsers come from PRESERVARIUM_NAIVE_PARSERS
(`type=path,type=path`).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from preservarium.contract.contact import Contact
from preservarium.contract.kinds import ErrorKind
from preservarium.sandbox_answers import CommandAnswer, ParseAnswer, ParserVersion, ScriptError
from preservarium.sandbox_client import CommandInput
from preservarium.service import run_service
from preservarium.settings import Settings
from preservarium_gateway.config import GatewayConfig
from preservarium_gateway.server import GatewayServer

from bench.workload import expose_protowire


class InProcessParsers:
    """ParserService that runs parser functions directly (unsafe on purpose)."""

    def __init__(self, sources: dict[str, str]) -> None:
        expose_protowire()
        self._modules: dict[str, dict[str, Any]] = {}
        for device_type, source in sources.items():
            namespace: dict[str, Any] = {"warn": lambda message: None}
            exec(compile(source, f"<{device_type}>", "exec"), namespace)
            self._modules[device_type] = namespace

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def parse(
        self,
        contact: Contact,
        *,
        identify: bool = False,
        command: CommandInput | None = None,
        timeout_s: float | None = None,
    ) -> ParseAnswer:
        module = self._modules[contact.device_type]
        metadata: dict[str, Any] = {
            "device_id": contact.device_id, "device_type": contact.device_type,
            "path": contact.path, "method": contact.method, "confirmable": contact.confirmable,
            "received_at": contact.received_at_s, "query": dict(contact.query),
        }  # fmt: skip
        parser = ParserVersion(contact.device_type, 0)
        try:
            if identify:
                metadata["device_id"] = module["identify"](contact.payload, metadata)
            data = module["parse"](contact.payload, metadata)
        except Exception as exc:
            return ParseAnswer(parser, ScriptError(ErrorKind.RUNTIME_ERROR, repr(exc)))
        return ParseAnswer(
            parser, device_id=metadata["device_id"], data_json=json.dumps(data).encode()
        )

    async def format_command(
        self, device_type: str, command: CommandInput, *, timeout_s: float | None = None
    ) -> CommandAnswer:
        params = json.loads(command.params_json)
        record = {"request_id": command.request_id, "device_id": command.device_id,
                  "command": command.command, "params": params}  # fmt: skip
        return CommandAnswer(payload=self._modules[device_type]["format_command"](record))


def _sources() -> dict[str, str]:
    pairs = (item.split("=", 1) for item in os.environ["PRESERVARIUM_NAIVE_PARSERS"].split(","))
    return {device_type: open(path, encoding="utf-8").read() for device_type, path in pairs}


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    parsers = InProcessParsers(_sources())
    async with GatewayServer(GatewayConfig.from_settings(settings), parsers=parsers):
        await stop.wait()


if __name__ == "__main__":
    run_service("naive-gateway", serve)
