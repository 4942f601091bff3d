"""The summary `preservarium up` prints once the stack is up: endpoints and next steps."""

from __future__ import annotations

import shlex
from pathlib import Path

from preservarium.settings import Settings
from sqlalchemy.engine import make_url

from preservarium_tools.embedded.config import StackConfig
from preservarium_tools.embedded.readiness import local
from preservarium_tools.embedded.shipped import describe_parser
from preservarium_tools.embedded.stack import StackReport

EXAMPLE_DEVICE = "282c02000001"
EXAMPLE_PARAMS = '{"measurement_period_base": 120, "transmission_interval": 600}'
DEFAULT_GATEWAY = "127.0.0.1:5683"


def endpoints(config: StackConfig, report: StackReport) -> list[tuple[str, str]]:
    """The summary's lines: (what, where)."""
    routes = ", ".join(f"/{route} → {kind}" for route, kind in config.coap_routes.items())
    kafka = "bundled broker" if config.embedded_kafka else "PRESERVARIUM_KAFKA_BOOTSTRAP"
    metrics = [
        f"{service} http://127.0.0.1:{port}/metrics" if port else f"{service} off"
        for service, port in config.metrics_ports.items()
    ]
    parsers = ", ".join(map(describe_parser, report.parsers)) or "none"
    pids = ", ".join(f"{name} {pid}" for name, pid in report.pids.items())
    return [
        ("CoAP gateway", f"coap://{config.coap_bind} (udp)  {routes or 'no routes'}, /d/{{id}}"),
        ("operator API", api_label(config)),
        ("sandbox gRPC", config.sandbox_addr),
        ("Kafka bootstrap", f"{config.kafka_bootstrap} ({kafka}), topics {config.topic_prefix}*"),
        ("database", database_label(config.database_url)),
        ("metrics", ", ".join(metrics)),
        ("parsers", parsers),
        ("processes", f"pids {pids}"),
    ]


def api_label(config: StackConfig) -> str:
    """Where the operator API and its docs are, or how to turn it on."""
    if config.api_listen is None:
        return "off (PRESERVARIUM_API_LISTEN)"
    base = f"http://{local(config.api_listen)}"
    return f"{base}/api/docs (token: preservarium token create NAME --scope admin)"


def database_label(url: str) -> str:
    """A SQLite URL as its file's absolute path; others without a password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return f"SQLite {Path(parsed.database).resolve()}"
    return parsed.render_as_string(hide_password=True)


def next_commands(config: StackConfig) -> list[str]:
    """The commands to try, with the variables they need to find this stack."""
    env = {}
    if config.kafka_bootstrap != Settings.model_fields["kafka_bootstrap"].default:
        env["PRESERVARIUM_KAFKA_BOOTSTRAP"] = config.kafka_bootstrap
    if config.topic_prefix != Settings.model_fields["topic_prefix"].default:
        env["PRESERVARIUM_TOPIC_PREFIX"] = config.topic_prefix
    prefix = "".join(f"{key}={shlex.quote(value)} " for key, value in env.items())
    reach = str(local(config.coap_bind))
    gateway = "" if reach == DEFAULT_GATEWAY else f" --gateway {reach}"
    return [
        f"{prefix}preservarium simulate efento{gateway}",
        # --force: the Efento device reaches a route and needs no registration.
        f"{prefix}preservarium command send {EXAMPLE_DEVICE} set_config "
        f"--params {shlex.quote(EXAMPLE_PARAMS)} --force",
        f"{prefix}preservarium tail parsed",
    ]
