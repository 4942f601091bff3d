"""Configuration, read once from the environment at the edge and passed down as a value."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from preservarium.cpus import available_cpus
from preservarium.errors import ConfigError

ENV_PREFIX = "PRESERVARIUM_"
TIMEOUT_CEILING_MS = 5000
DEFAULT_GATEWAY_METRICS_PORT = 9464
DEFAULT_SANDBOX_METRICS_PORT = 9465
DATABASE_FILE = "preservarium.db"
MAX_GATEWAY_PROCESSES = 256
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class HostPort:
    """A `host:port` address as the settings spell it."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_host_port(value: str) -> HostPort:
    """Parse `host:port` (IPv6 hosts in brackets); raise ValueError with a clear reason."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port_text!r}")
    return HostPort(host, int(port_text))


class DeviceAuthMode(StrEnum):
    """How strictly the gateway asks devices to prove who they are."""

    REQUIRED = "required"  # every contact authenticates as the device it names
    OPTIONAL = "optional"  # devices registered without credentials (and route devices) pass


def parse_optional_host_port(value: str) -> HostPort | None:
    """`host:port`, or None for an empty value (the listener is off)."""
    return parse_host_port(value) if value.strip() else None


def parse_routes(value: str) -> dict[str, str]:
    """Parse `route=type,route=type` into a mapping; raise ValueError with a clear reason."""
    routes: dict[str, str] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        route, sep, device_type = item.partition("=")
        route, device_type = route.strip().strip("/"), device_type.strip()
        if not sep or not route or not device_type:
            raise ValueError(f"expected ROUTE=TYPE pairs, got {item!r}")
        if route == "d" or route.startswith(("d/", ".well-known")):
            raise ValueError(f"route {route!r} is reserved")
        routes[route] = device_type
    return routes


SECRET_KEY_MIN_CHARS = 32
SECRET_FIELDS = frozenset({"secret_key"})


def parse_process_count(value: str) -> int:
    """A process count as the settings and `--processes` spell it: an integer, or `auto`
    for the CPUs this process may use (its affinity and cgroup quota)."""
    text = value.strip().lower()
    if text == "auto":
        return available_cpus()
    try:
        return int(text)
    except ValueError:
        raise ValueError("expected a whole number of processes, or auto") from None


def parse_secret_keys(value: str) -> tuple[str, ...]:
    """Split `current[,older...]` secret keys; raise ValueError naming what is wrong."""
    keys = tuple(key.strip() for key in value.split(","))
    for position, key in enumerate(keys, start=1):
        if len(key) < SECRET_KEY_MIN_CHARS:
            raise ValueError(
                f"key {position} has {len(key)} characters; each key needs at least "
                f"{SECRET_KEY_MIN_CHARS} (e.g. `openssl rand -base64 32`)"
            )
    return keys


def default_data_dir() -> Path:
    """The per-user data directory: `$XDG_DATA_HOME/preservarium`, else
    `~/.local/share/preservarium` (the XDG base directory rules; a relative
    XDG_DATA_HOME is ignored, as the rules say)."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "preservarium"


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite file at `path` (absolute)."""
    return f"sqlite+aiosqlite:///{path}"


class Settings(BaseSettings):
    """Every PRESERVARIUM_* variable of the contract, with its default."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    # Empty means SQLite in data_dir (filled in by _default_database).
    database_url: str = ""
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "preservarium."
    sandbox_listen: Annotated[HostPort, NoDecode] = HostPort("127.0.0.1", 50051)
    sandbox_addr: str = "127.0.0.1:50051"
    coap_bind: Annotated[HostPort, NoDecode] = HostPort("0.0.0.0", 5683)
    coap_routes: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # The service's own default is the safe one; `preservarium up` sets `optional`.
    device_auth: DeviceAuthMode = DeviceAuthMode.REQUIRED
    # The DTLS-PSK listener; empty turns it off.
    coaps_bind: Annotated[HostPort | None, NoDecode] = HostPort("0.0.0.0", 5684)
    # The operator HTTP API of the gateway; empty turns it off.
    api_listen: Annotated[HostPort | None, NoDecode] = HostPort("127.0.0.1", 8080)
    device_rate_per_min: int = Field(default=120, ge=0, le=1_000_000)
    source_rate_per_min: int = Field(default=600, ge=0, le=1_000_000)
    command_queue_limit: int = Field(default=100, ge=1, le=1_000_000)
    sandbox_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    # Gateway processes sharing the CoAP port; `auto` is the CPUs this process may use.
    gateway_processes: int = Field(default=1, ge=1, le=MAX_GATEWAY_PROCESSES)
    sandbox_timeout_ms: int = Field(default=100, ge=1, le=TIMEOUT_CEILING_MS)
    sandbox_memory_mb: int = Field(default=256, ge=64, le=65536)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    db_auto_migrate: bool = False
    log_level: str = "INFO"
    # Current key first, older keys after it (comma-separated); never printed.
    secret_key: SecretStr | None = None

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, value: Any) -> Any:
        if isinstance(value, str | Path):
            if not str(value).strip():
                return default_data_dir()
            # Absolute once, here: the same directory whatever the commands' cwd.
            return Path(value).expanduser().absolute()
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            level = value.strip().upper()
            if level not in LOG_LEVELS:
                raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
            return level
        return value

    @field_validator("sandbox_listen", "coap_bind", mode="before")
    @classmethod
    def _host_port(cls, value: Any) -> Any:
        return parse_host_port(value) if isinstance(value, str) else value

    @field_validator("coaps_bind", "api_listen", mode="before")
    @classmethod
    def _optional_host_port(cls, value: Any) -> Any:
        return parse_optional_host_port(value) if isinstance(value, str) else value

    @field_validator("gateway_processes", mode="before")
    @classmethod
    def _gateway_processes(cls, value: Any) -> Any:
        return parse_process_count(value) if isinstance(value, str) else value

    @field_validator("device_auth", mode="before")
    @classmethod
    def _device_auth(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("coap_routes", mode="before")
    @classmethod
    def _routes(cls, value: Any) -> Any:
        return parse_routes(value) if isinstance(value, str) else value

    @field_validator("sandbox_addr", "kafka_bootstrap")
    @classmethod
    def _addresses(cls, value: str) -> str:
        for part in value.split(","):
            parse_host_port(part)
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        parse_secret_keys(value.get_secret_value())
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("expected a sqlite+aiosqlite:// or postgresql+asyncpg:// URL")
        return value

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            # The model is frozen to its users; this is still its construction.
            object.__setattr__(self, "database_url", sqlite_url(self.data_dir / DATABASE_FILE))
        return self

    def metrics_port_or(self, default: int) -> int:
        """The metrics port for a service whose own default is `default` (0 = off)."""
        return default if self.metrics_port is None else self.metrics_port

    def topic(self, suffix: str) -> str:
        """The full Kafka topic name for a contract suffix such as `uplink.raw`."""
        return self.topic_prefix + suffix


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once; a bad value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        reason = str(first["msg"]).removeprefix("Value error, ")
        raw = first.get("input")
        secret = field in SECRET_FIELDS  # a bad secret is named, never echoed
        shown = f" (got {raw!r})" if isinstance(raw, str | int) and not secret else ""
        raise ConfigError(f"{ENV_PREFIX}{field.upper()}: {reason}{shown}") from exc
