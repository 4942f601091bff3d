"""`preservarium-sandbox-probe`: the sandbox image's health probe, a gRPC health check.

It asks the standard `grpc.health.v1.Health/Check` and prints one line; see
`preservarium.probing` for the exit codes. It is the client side of the sandbox, like the
sandbox client, so both images carry it: the gateway's container can check that it reaches
its sandbox. `preservarium probe sandbox` runs the same code.
"""

from __future__ import annotations

from typing import NoReturn

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from preservarium.probing import (
    ProbeArguments,
    addresses,
    local_address,
    probe_settings,
    report,
)
from preservarium.settings import HostPort


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


def probe_sandbox(address: str | None, *, local: bool, service: str, timeout_s: float) -> NoReturn:
    """Check every sandbox of `address` (default PRESERVARIUM_SANDBOX_ADDR), or this host's
    own with `local`; healthy when every one answers SERVING."""
    if local and address is not None:
        report(False, "give ADDR or --local, not both")
    if local:
        targets = [local_address(probe_settings().sandbox_listen)]
    else:
        targets = addresses(address if address is not None else probe_settings().sandbox_addr)
    results = [check_sandbox(target, service=service, timeout_s=timeout_s) for target in targets]
    pairs = zip(targets, results, strict=True)
    line = "; ".join(f"{target}: {seen}" for target, (_, seen) in pairs)
    report(all(ok for ok, _ in results), f"sandbox {line}")


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point."""
    parser = ProbeArguments(
        prog="preservarium-sandbox-probe",
        description="gRPC health check of the sandbox: exit 0 if every address answers SERVING.",
    )
    parser.add_argument(
        "address", nargs="?", metavar="ADDR",
        help="HOST:PORT[,HOST:PORT...]; default PRESERVARIUM_SANDBOX_ADDR.",
    )  # fmt: skip
    parser.add_argument(
        "--local", action="store_true",
        help="Probe this host's own sandbox: the port of PRESERVARIUM_SANDBOX_LISTEN.",
    )  # fmt: skip
    parser.add_argument("--service", default="", help="gRPC service name; '' is the server.")
    parser.add_timeout()
    args = parser.parse_args(argv)
    probe_sandbox(args.address, local=args.local, service=args.service, timeout_s=args.timeout)
