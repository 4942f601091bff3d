"""Which project source files one device contact enters, from the datagram to its Kafka
records: a probe for the architecture (how many modules a change to a contact touches),
not a test of behaviour. `scripts/contact-path` runs it and prints the list.

The gateway, the sandbox server and the broker client share this process's event loop;
the probe profiles that thread only, from the moment a hand-made CoAP datagram leaves a
socket in another thread until the contact's parsed record is read back. A first contact
warms caches and connections first, so that only the steady path is counted. Background
loops are slowed down so that they do not run inside the window.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer

from tests.gateway.conftest import Topology
from tests.gateway.parsers import READING, THERMO
from tests.support.parsers import install_parsers

ROOT = Path(__file__).resolve().parents[2]
# Where the counted files live (the sandbox's own files are listed, not counted: a
# contact reaches them over gRPC, in another service).
COUNTED = ("gateway/src/", "sdk/src/")
LISTED = (*COUNTED, "sandbox/src/")
QUIET = 3600.0


@pytest.fixture(scope="module")
def gateway_options() -> dict[str, Any]:
    return {
        "commands_refresh_s": QUIET,
        "directory_refresh_s": QUIET,
        "directory_watch_s": QUIET,
        "last_seen_flush_s": QUIET,
    }


@pytest.fixture(scope="module", autouse=True)
async def setup_parsers(gw_db: str, gw_sandbox: SandboxServer) -> None:
    await install_parsers(gw_db, gw_sandbox, {"thermo": THERMO}, devices=[("dev-1", "thermo")])


def datagram(message_id: int, device_id: str, payload: bytes) -> bytes:
    """A CON POST to /d/{device_id}, built by hand (the project's CoAP codec would be
    counted if the probe used it)."""
    head = bytes([0x40, 0x02]) + message_id.to_bytes(2, "big")
    path = bytes([0xB1]) + b"d" + bytes([len(device_id)]) + device_id.encode()
    return head + path + b"\xff" + payload


def send(port: int, data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(data, ("127.0.0.1", port))
        return sock.recv(2048)


@contextmanager
def entered_files() -> Iterator[set[str]]:
    """The source files of every Python function called in this thread meanwhile."""
    files: set[str] = set()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            files.add(frame.f_code.co_filename)

    sys.setprofile(profile)
    try:
        yield files
    finally:
        sys.setprofile(None)


def project_files(files: set[str]) -> list[str]:
    """The project's own files among `files`, relative to the repository."""
    found = []
    for name in files:
        try:
            relative = Path(name).resolve().relative_to(ROOT).as_posix()
        except ValueError:
            continue
        if relative.startswith(LISTED):
            found.append(relative)
    return sorted(found)


async def contact(gateway: GatewayServer, topics: Topology, message_id: int) -> None:
    answer = await asyncio.to_thread(
        send, gateway.config.bind.port, datagram(message_id, "dev-1", READING)
    )
    assert answer[1] == 0x41  # 2.01 Created
    raw = await topics.raw.wait_for(lambda r: r["device_id"] == "dev-1", count=message_id)
    await topics.parsed.wait_for(lambda r: r["id"] == raw[-1]["id"])


async def test_contact_path(gateway: GatewayServer, topics: Topology) -> None:
    await contact(gateway, topics, 1)
    with entered_files() as files:
        await contact(gateway, topics, 2)
    found = project_files(files)
    counted = [name for name in found if name.startswith(COUNTED)]
    assert counted, "the probe saw no project file: is the gateway in this process?"
    if os.environ.get("CONTACT_PATH_PRINT"):
        print(f"\n{len(counted)} files under {' and '.join(COUNTED)}:")
        for name in found:
            print(("  " if name.startswith(COUNTED) else "  (not counted) ") + name)
