"""Settings: every variable, its default, and one clear line for a bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from preservarium.errors import ConfigError
from preservarium.settings import DeviceAuthMode, HostPort, load_settings

VARIABLES = {
    "PRESERVARIUM_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
    "PRESERVARIUM_TOPIC_PREFIX": "preservarium.",
    "PRESERVARIUM_SANDBOX_ADDR": "127.0.0.1:50051",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PRESERVARIUM_"):
            monkeypatch.delenv(name)


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    data_dir = tmp_path / ".local" / "share" / "preservarium"
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite+aiosqlite:///{data_dir}/preservarium.db"
    assert settings.log_level == "INFO"
    assert settings.kafka_bootstrap == VARIABLES["PRESERVARIUM_KAFKA_BOOTSTRAP"]
    assert settings.topic_prefix == VARIABLES["PRESERVARIUM_TOPIC_PREFIX"]
    assert settings.sandbox_addr == VARIABLES["PRESERVARIUM_SANDBOX_ADDR"]
    assert settings.sandbox_listen == HostPort("127.0.0.1", 50051)
    assert settings.coap_bind == HostPort("0.0.0.0", 5683)
    assert settings.coap_routes == {}
    assert settings.sandbox_workers == (os.cpu_count() or 1)
    assert (settings.sandbox_timeout_ms, settings.sandbox_memory_mb) == (100, 256)
    assert settings.metrics_port_or(9464) == 9464
    assert settings.topic("uplink.raw") == "preservarium.uplink.raw"
    assert settings.device_auth is DeviceAuthMode.REQUIRED  # `up` sets optional
    assert settings.coaps_bind == HostPort("0.0.0.0", 5684)
    assert (settings.device_rate_per_min, settings.source_rate_per_min) == (120, 600)


def test_the_data_dir_is_the_same_from_any_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    seen = set()
    for cwd in (tmp_path, Path("/")):
        monkeypatch.chdir(cwd)
        seen.add(load_settings().database_url)
    assert seen == {f"sqlite+aiosqlite:///{tmp_path}/xdg/preservarium/preservarium.db"}
    monkeypatch.setenv("PRESERVARIUM_DATA_DIR", "relative")
    monkeypatch.chdir(tmp_path)
    assert load_settings().data_dir == tmp_path / "relative"  # made absolute once
    monkeypatch.setenv("PRESERVARIUM_DATABASE_URL", "postgresql+asyncpg://h/db")
    assert load_settings().database_url == "postgresql+asyncpg://h/db"


def test_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESERVARIUM_COAP_ROUTES", "m=efento, i=efento,c=efento,t=efento")
    monkeypatch.setenv("PRESERVARIUM_COAP_BIND", "[::]:15683")
    monkeypatch.setenv("PRESERVARIUM_METRICS_PORT", "0")
    monkeypatch.setenv("PRESERVARIUM_SANDBOX_TIMEOUT_MS", "5000")
    settings = load_settings()
    assert settings.coap_routes == {"m": "efento", "i": "efento", "c": "efento", "t": "efento"}
    assert settings.coap_bind == HostPort("::", 15683)
    assert settings.metrics_port_or(9464) == 0
    assert settings.sandbox_timeout_ms == 5000


def test_device_identity_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESERVARIUM_DEVICE_AUTH", " Optional ")
    monkeypatch.setenv("PRESERVARIUM_COAPS_BIND", "")
    monkeypatch.setenv("PRESERVARIUM_DEVICE_RATE_PER_MIN", "0")
    settings = load_settings()
    assert settings.device_auth is DeviceAuthMode.OPTIONAL
    assert settings.coaps_bind is None  # empty turns the DTLS listener off
    assert settings.device_rate_per_min == 0
    monkeypatch.setenv("PRESERVARIUM_COAPS_BIND", "127.0.0.1:15684")
    assert load_settings().coaps_bind == HostPort("127.0.0.1", 15684)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PRESERVARIUM_SANDBOX_TIMEOUT_MS", "5001"),
        ("PRESERVARIUM_SANDBOX_TIMEOUT_MS", "soon"),
        ("PRESERVARIUM_SANDBOX_WORKERS", "0"),
        ("PRESERVARIUM_SANDBOX_MEMORY_MB", "1"),
        ("PRESERVARIUM_COAP_BIND", "5683"),
        ("PRESERVARIUM_SANDBOX_LISTEN", "127.0.0.1:99999"),
        ("PRESERVARIUM_COAP_ROUTES", "m=efento,broken"),
        ("PRESERVARIUM_COAP_ROUTES", "d=efento"),
        ("PRESERVARIUM_METRICS_PORT", "-1"),
        ("PRESERVARIUM_DATABASE_URL", "mysql://x"),
        ("PRESERVARIUM_KAFKA_BOOTSTRAP", "nohost"),
        ("PRESERVARIUM_LOG_LEVEL", "LOUD"),
        ("PRESERVARIUM_DEVICE_AUTH", "sometimes"),
        ("PRESERVARIUM_COAPS_BIND", "5684"),
        ("PRESERVARIUM_DEVICE_RATE_PER_MIN", "-1"),
        ("PRESERVARIUM_SOURCE_RATE_PER_MIN", "lots"),
        ("PRESERVARIUM_GATEWAY_PROCESSES", "0"),
        ("PRESERVARIUM_GATEWAY_PROCESSES", "-2"),
        ("PRESERVARIUM_GATEWAY_PROCESSES", "all"),
        ("PRESERVARIUM_GATEWAY_PROCESSES", "257"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(name + ":")
    assert "\n" not in message


@pytest.mark.parametrize("variable", ["PRESERVARIUM_SANDBOX_TIMEOUT_MS", "PRESERVARIUM_LOG_LEVEL"])
@pytest.mark.parametrize(
    "command", ["preservarium-sandbox", "preservarium-gateway", "preservarium"]
)
def test_services_fail_at_start_with_one_line(command: str, variable: str) -> None:
    bin_dir = os.path.dirname(sys.executable)
    args = [os.path.join(bin_dir, command)] + (
        ["db", "upgrade"] if command == "preservarium" else []
    )
    env = {**os.environ, variable: {"PRESERVARIUM_LOG_LEVEL": "LOUD"}.get(variable, "9000")}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert "Traceback" not in done.stderr


def test_the_gateway_refuses_required_mode_without_a_secret_key(tmp_path: Path) -> None:
    bin_dir = os.path.dirname(sys.executable)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PRESERVARIUM_")},
        "PRESERVARIUM_DEVICE_AUTH": "required",
        "PRESERVARIUM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db'}",
    }
    done = subprocess.run(
        [os.path.join(bin_dir, "preservarium-gateway")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    # One plain line says why (besides the service's JSON log lines).
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]
    assert len(lines) == 1 and "PRESERVARIUM_SECRET_KEY" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_gateway_processes_is_a_number_or_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().gateway_processes == 1
    monkeypatch.setenv("PRESERVARIUM_GATEWAY_PROCESSES", "3")
    assert load_settings().gateway_processes == 3
    monkeypatch.setenv("PRESERVARIUM_GATEWAY_PROCESSES", " Auto ")
    # One per CPU this process may run on, fewer under a CPU quota (tests/sdk/test_cpus.py).
    assert 1 <= load_settings().gateway_processes <= len(os.sched_getaffinity(0))
