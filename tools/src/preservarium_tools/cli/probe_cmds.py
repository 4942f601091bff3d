"""`preservarium probe ...`: one-line health probes, for container healthchecks.

Exit status 0 when the service answers healthy and 1 for anything else (Docker reads 0
as healthy and 1 as unhealthy; it reserves 2), with one line saying what was seen.
"""

from __future__ import annotations

import asyncio
import sys
from typing import NoReturn

import grpc
import typer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from preservarium.errors import PreservariumError
from preservarium.settings import HostPort, Settings, load_settings, parse_host_port

from preservarium_tools import coapwire

app = typer.Typer(
    help="Health probes of the services: exit 0 healthy, 1 not.", no_args_is_help=True
)

DEFAULT_TIMEOUT_S = 3.0
HEALTHY, UNHEALTHY = 0, 1
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
WELL_KNOWN_CORE = "/.well-known/core"
CONTENT = coapwire.code_number("2.05")
TIMEOUT = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", min=0.1, help="Seconds to wait.")


def _report(healthy: bool, line: str) -> NoReturn:
    """Print the probe's one line and exit with its status."""
    print(" ".join(line.split()), file=sys.stdout if healthy else sys.stderr)
    raise SystemExit(HEALTHY if healthy else UNHEALTHY)


def _settings() -> Settings:
    try:
        return load_settings()
    except PreservariumError as exc:
        _report(False, str(exc))


def _addresses(text: str) -> list[HostPort]:
    try:
        return [parse_host_port(part) for part in text.split(",")]
    except ValueError as exc:
        _report(False, f"bad address {text!r}: {exc}")


def local_address(bind: HostPort) -> HostPort:
    """Where a client on the same host reaches a server bound to `bind`."""
    return HostPort("127.0.0.1" if bind.host in WILDCARD_HOSTS else bind.host, bind.port)


def grpc_target(address: HostPort) -> str:
    """`host:port` as gRPC spells it (IPv6 literals in brackets)."""
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{host}:{address.port}"


def check_sandbox(address: HostPort, *, service: str, timeout_s: float) -> tuple[bool, str]:
    """Ask one sandbox's grpc.health.v1 service; (serving, what it answered)."""
    request = health_pb2.HealthCheckRequest(service=service)
    with grpc.insecure_channel(grpc_target(address)) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call):
                details = exc.details()
                return False, exc.code().name + (f" ({details})" if details else "")
            return False, type(exc).__name__
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, str(status)


async def check_gateway(address: HostPort, *, timeout_s: float) -> tuple[bool, str]:
    """GET /.well-known/core from one gateway; (answered 2.05, what it answered)."""
    try:
        async with coapwire.CoapClient(address.host, address.port, timeout_s=timeout_s) as client:
            response = await client.call(coapwire.GET, WELL_KNOWN_CORE)
    except TimeoutError:
        return False, f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return False, f"cannot reach it: {exc.strerror or exc}"
    return response.code == CONTENT, f"answered {response.dotted_code}"


@app.command("sandbox")
def sandbox(
    address: str | None = typer.Argument(
        None,
        metavar="[ADDR]",
        help="HOST:PORT[,HOST:PORT...]; default PRESERVARIUM_SANDBOX_ADDR.",
    ),
    local: bool = typer.Option(
        False,
        "--local",
        help="Probe this host's own sandbox: the port of PRESERVARIUM_SANDBOX_LISTEN.",
    ),
    service: str = typer.Option("", "--service", help="gRPC service name; '' is the server."),
    timeout: float = TIMEOUT,
) -> None:
    """gRPC health check of the sandbox: exit 0 if every address answers SERVING."""
    if local and address is not None:
        _report(False, "give ADDR or --local, not both")
    if local:
        targets = [local_address(_settings().sandbox_listen)]
    else:
        targets = _addresses(address if address is not None else _settings().sandbox_addr)
    results = [check_sandbox(target, service=service, timeout_s=timeout) for target in targets]
    pairs = zip(targets, results, strict=True)
    line = "; ".join(f"{target}: {seen}" for target, (_, seen) in pairs)
    _report(all(ok for ok, _ in results), f"sandbox {line}")


@app.command("gateway")
def gateway(
    address: str | None = typer.Argument(
        None, metavar="[HOST:PORT]", help="Default: this host, the port of PRESERVARIUM_COAP_BIND."
    ),
    timeout: float = TIMEOUT,
) -> None:
    """CoAP GET /.well-known/core: exit 0 if the gateway answers 2.05 Content."""
    if address is None:
        target = local_address(_settings().coap_bind)
    else:
        (target, *rest) = _addresses(address)
        if rest:
            _report(False, "give one HOST:PORT")
    if not target.port:
        _report(False, f"no port to probe in {target}: give HOST:PORT")
    ok, seen = asyncio.run(check_gateway(target, timeout_s=timeout))
    _report(ok, f"gateway {target}: {seen}")
