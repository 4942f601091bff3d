"""`preservarium command send --params`: refused in one line, exit 2, before any Kafka I/O,
by the same rules the gateway applies to `command.request` records."""

from __future__ import annotations

import pytest

from tests.support.cli import run_cli
from tests.support.net import free_port


@pytest.mark.parametrize(
    "params",
    [
        '{"seconds": NaN}',
        '{"seconds": Infinity}',
        '{"seconds": -Infinity}',
        '{"seconds": 1e999}',
        '{"seconds": "\\ud800"}',
        '{"\\udfff": 1}',
        '{"seconds": "\udcff"}',  # a raw 0xff byte in argv (decoded with surrogateescape)
        '{"a": 1, "a": 2}',
        '{"n": 18446744073709551616}',
        '{"deep": ' + "[" * 40 + "]" * 40 + "}",
    ],
)
def test_params_that_are_not_plain_json_are_refused(params: str) -> None:
    # A broker nobody listens on: input that passed validation would fail differently.
    env = {"PRESERVARIUM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    done = run_cli("command", "send", "dev-1", "set_period", "--params", params, env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "params" in lines[0] and "Kafka" not in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("dev-1", "set\udcffperiod"),
        ("dev-1", "reboot", "--request-id", "r\udcff"),
        ("dev-1", "reboot", "--request-id", "r\x01"),
    ],
)
def test_names_and_ids_that_are_not_text_are_refused(args: tuple[str, ...]) -> None:
    env = {"PRESERVARIUM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    done = run_cli("command", "send", *args, env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Kafka" not in lines[0]
