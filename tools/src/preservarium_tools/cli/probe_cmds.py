"""`preservarium probe ...`: one-line health probes, for container healthchecks.

The checks themselves belong to the services (`preservarium.sandbox_probe`,
`preservarium_gateway.probe`), whose images run them as `preservarium-sandbox-probe` and
`preservarium-gateway-probe` without this command; these are the same probes for a shell.
Exit status 0 when the service answers healthy and 1 for anything else.
"""

from __future__ import annotations

import typer
from preservarium.probing import DEFAULT_TIMEOUT_S
from preservarium.sandbox_probe import probe_sandbox
from preservarium_gateway.probe import probe_gateway

app = typer.Typer(
    help="Health probes of the services: exit 0 healthy, 1 not.", no_args_is_help=True
)

TIMEOUT = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", min=0.1, help="Seconds to wait.")


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
    probe_sandbox(address, local=local, service=service, timeout_s=timeout)


@app.command("gateway")
def gateway(
    address: str | None = typer.Argument(
        None, metavar="[HOST:PORT]", help="Default: this host, the port of PRESERVARIUM_COAP_BIND."
    ),
    timeout: float = TIMEOUT,
) -> None:
    """CoAP GET /.well-known/core: exit 0 if the gateway answers 2.05 Content."""
    probe_gateway(address, timeout_s=timeout)
