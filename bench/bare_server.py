"""The ceiling: a bare aiocoap server that answers every request 2.01 and does nothing else."""

from __future__ import annotations

import asyncio
import sys

import aiocoap
from aiocoap import resource
from aiocoap.numbers.codes import Code


class Created(resource.Resource, resource.PathCapable):  # type: ignore[misc]
    """Answers 2.01 to anything."""

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        return False

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=Code.CREATED)


async def serve(port: int) -> None:
    await aiocoap.Context.create_server_context(Created(), bind=("127.0.0.1", port))
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
