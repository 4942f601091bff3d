"""The console is mounted only through its package's `mount(app)`, when it is there."""

from __future__ import annotations

import sys
import types

import pytest
from fastapi import FastAPI
from preservarium_gateway.api import create_app
from preservarium_gateway.api.app import CONSOLE_MODULE, mount_console

from tests.api.conftest import Api


async def test_a_console_package_mounts_itself(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    mounted: list[FastAPI] = []
    console = types.ModuleType(CONSOLE_MODULE)
    console.mount = mounted.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, CONSOLE_MODULE, console)
    app = create_app(api.context)
    assert mounted == [app]


async def test_no_mount_function_mounts_nothing(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, CONSOLE_MODULE, types.ModuleType(CONSOLE_MODULE))
    assert mount_console(create_app(api.context, console=False)) is False
