"""`preservarium probe sandbox|gateway`: one line, exit 0 healthy and 1 for anything else."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from preservarium_tools import coapwire
from preservarium_tools.cli.probe_cmds import app
from typer.testing import CliRunner, Result

from tests.support.net import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def probe(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run the probe in-process, `env` added to the environment; it prints one line."""
    result = CliRunner().invoke(app, list(args), env=env)
    assert len(result.output.strip().splitlines()) == 1, result.output
    return result


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    """A gRPC server with only the standard health service, on a free port."""
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None).wait()


@pytest.fixture
def coap_responder() -> Iterator[tuple[int, list[int]]]:
    """A UDP socket answering every CoAP request with the next code of the list."""
    codes: list[int] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            request = coapwire.decode(data)
            answer = coapwire.CoapMessage(coapwire.ACK, codes.pop(0), request.mid, request.token)
            sock.sendto(coapwire.encode(answer), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1], codes
    done.set()
    thread.join()
    sock.close()


def test_sandbox_serving(health_server: tuple[str, health.HealthServicer]) -> None:
    address, servicer = health_server
    servicer.set("", SERVING)
    result = probe("sandbox", address)
    assert result.exit_code == 0
    assert result.output.strip() == f"sandbox {address}: SERVING"


def test_sandbox_not_serving(health_server: tuple[str, health.HealthServicer]) -> None:
    address, servicer = health_server
    servicer.set("", NOT_SERVING)
    result = probe("sandbox", address)
    assert result.exit_code == 1
    assert "NOT_SERVING" in result.output


def test_sandbox_default_address_and_service_name(
    health_server: tuple[str, health.HealthServicer],
) -> None:
    address, servicer = health_server
    servicer.set("preservarium.sandbox.v1.ParserSandbox", SERVING)
    env = {"PRESERVARIUM_SANDBOX_ADDR": address}
    assert (
        probe("sandbox", "--service", "preservarium.sandbox.v1.ParserSandbox", env=env).exit_code
        == 0
    )
    assert "NOT_FOUND" in probe("sandbox", "--service", "nope", env=env).output


def test_sandbox_local_uses_the_listen_port(
    health_server: tuple[str, health.HealthServicer],
) -> None:
    address, servicer = health_server
    servicer.set("", SERVING)
    port = address.rpartition(":")[2]
    result = probe("sandbox", "--local", env={"PRESERVARIUM_SANDBOX_LISTEN": f"0.0.0.0:{port}"})
    assert result.exit_code == 0
    assert result.output.strip() == f"sandbox 127.0.0.1:{port}: SERVING"


def test_every_sandbox_of_a_list_must_serve(
    health_server: tuple[str, health.HealthServicer],
) -> None:
    address, servicer = health_server
    servicer.set("", SERVING)
    dead = f"127.0.0.1:{free_port()}"
    result = probe("sandbox", f"{address},{dead}", "--timeout", "1")
    assert result.exit_code == 1
    assert f"{address}: SERVING" in result.output
    assert f"{dead}: UNAVAILABLE" in result.output


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["sandbox", "nowhere"], {}, "bad address"),
        (["sandbox", "127.0.0.1:1", "--local"], {}, "not both"),
        (["sandbox"], {"PRESERVARIUM_SANDBOX_ADDR": "x"}, "PRESERVARIUM_SANDBOX_ADDR"),
        (["gateway"], {"PRESERVARIUM_COAP_BIND": "5683"}, "PRESERVARIUM_COAP_BIND"),
        (["gateway", "a:1,b:2"], {}, "one HOST:PORT"),
        (["gateway"], {"PRESERVARIUM_COAP_BIND": "0.0.0.0:0"}, "no port"),
    ],
)
def test_usage_and_setting_errors_are_unhealthy(
    args: list[str], env: dict[str, str], fragment: str
) -> None:
    result = probe(*args, env=env)
    assert result.exit_code == 1
    assert fragment in result.output


def test_gateway_content_is_healthy(coap_responder: tuple[int, list[int]]) -> None:
    port, codes = coap_responder
    codes.append(coapwire.code_number("2.05"))
    result = probe("gateway", env={"PRESERVARIUM_COAP_BIND": f"0.0.0.0:{port}"})
    assert result.exit_code == 0
    assert result.output.strip() == f"gateway 127.0.0.1:{port}: answered 2.05"


def test_gateway_other_code_is_unhealthy(coap_responder: tuple[int, list[int]]) -> None:
    port, codes = coap_responder
    codes.append(coapwire.code_number("5.03"))
    result = probe("gateway", f"127.0.0.1:{port}")
    assert result.exit_code == 1
    assert "answered 5.03" in result.output


def test_gateway_silent_is_unhealthy() -> None:
    port = free_port(socket.SOCK_DGRAM)
    result = probe("gateway", f"127.0.0.1:{port}", "--timeout", "0.3")
    assert result.exit_code == 1
    assert "no answer within 0.3 s" in result.output


def test_the_probe_command_imports_no_database_or_kafka_code(
    health_server: tuple[str, health.HealthServicer],
) -> None:
    """Healthchecks run `preservarium probe` every few seconds: it must stay light."""
    address, _ = health_server
    script = (
        "import sys\n"
        f"sys.argv = ['preservarium', 'probe', 'sandbox', {address!r}]\n"
        "from preservarium_tools.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
        "heavy = sorted(m for m in ('sqlalchemy', 'alembic', 'aiokafka', 'asyncpg')\n"
        "               if m in sys.modules)\n"
        "print('RESULT', code, heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert "RESULT 0 []" in done.stdout, done.stdout + done.stderr


def test_the_full_command_still_has_every_noun() -> None:
    from preservarium_tools.cli.app import build_app

    result = CliRunner().invoke(build_app(), ["--help"])
    for noun in ("db", "parser", "device", "command", "tail", "probe", "up", "simulate"):
        assert noun in result.output, noun
