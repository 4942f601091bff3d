"""What `up` runs where, from the settings: defaults, overrides, each service's metrics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from preservarium.errors import ConfigError
from preservarium.settings import HostPort, load_settings
from preservarium_tools.embedded.config import StackConfig, UpOptions, metrics_ports
from preservarium_tools.embedded.ports import Port
from preservarium_tools.embedded.stack import StackReport
from preservarium_tools.embedded.summary import endpoints, next_commands


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test passes counts: nothing from the environment running the suite."""
    for name in list(os.environ):
        if name.startswith("PRESERVARIUM_"):
            monkeypatch.delenv(name)


def config(options: UpOptions | None = None, **env: str) -> StackConfig:
    settings = load_settings(**env)  # values given here count as set, as the environment does
    return StackConfig.from_settings(
        settings,
        options or UpOptions(),
        environ={"PATH": "/bin", "PRESERVARIUM_LOG_LEVEL": "DEBUG"},
        bin_dir=Path("/venv/bin"),
        parsers_dir=None,
    )


class TestDefaults:
    def test_a_laptop_stack(self) -> None:
        stack = config()
        assert stack.coap_bind == HostPort("127.0.0.1", 5683)
        assert dict(stack.coap_routes) == {"m": "efento", "i": "efento", "c": "efento",
                                           "t": "efento"}  # fmt: skip
        assert (stack.kafka_bootstrap, stack.broker_port) == ("127.0.0.1:9092", 9092)
        assert stack.sandbox_addr == "127.0.0.1:50051"
        assert dict(stack.metrics_ports) == {"gateway": 9464, "sandbox": 9465}
        assert stack.ports() == [
            Port("127.0.0.1", 5683, "udp"),
            Port("127.0.0.1", 5684, "udp"),
            Port("127.0.0.1", 9092),
            Port("127.0.0.1", 50051),
            Port("127.0.0.1", 8080),
            Port("0.0.0.0", 9464),
            Port("0.0.0.0", 9465),
        ]

    def test_each_service_gets_its_own_metrics_port(self) -> None:
        stack = config()
        gateway, sandbox = stack.child_env("gateway"), stack.child_env("sandbox")
        assert (gateway["PRESERVARIUM_METRICS_PORT"], sandbox["PRESERVARIUM_METRICS_PORT"]) == (
            "9464",
            "9465",
        )
        assert gateway["PRESERVARIUM_COAP_ROUTES"] == "m=efento,i=efento,c=efento,t=efento"
        assert gateway["PRESERVARIUM_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"
        assert gateway["PRESERVARIUM_DB_AUTO_MIGRATE"] == "0"
        assert gateway["PRESERVARIUM_LOG_LEVEL"] == "DEBUG"  # the rest is passed on
        # The services default to `required`; the embedded stack lets simulate work.
        assert gateway["PRESERVARIUM_DEVICE_AUTH"] == "optional"
        assert gateway["PRESERVARIUM_COAPS_BIND"] == "127.0.0.1:5684"


class TestOverrides:
    def test_device_auth_and_the_dtls_listener_follow_the_settings(self) -> None:
        stack = config(device_auth="required", coaps_bind="")
        gateway = stack.child_env("gateway")
        assert gateway["PRESERVARIUM_DEVICE_AUTH"] == "required"
        assert gateway["PRESERVARIUM_COAPS_BIND"] == ""
        assert [port.port for port in stack.ports() if port.protocol == "udp"] == [5683]

    def test_a_named_kafka_is_used_and_no_broker_started(self) -> None:
        stack = config(kafka_bootstrap="kafka:9093")
        assert (stack.kafka_bootstrap, stack.broker_port) == ("kafka:9093", None)
        assert all(port.port != 9092 for port in stack.ports())

    def test_the_bundled_broker_port_is_an_option(self) -> None:
        stack = config(UpOptions(kafka_port=19092))
        assert stack.kafka_bootstrap == "127.0.0.1:19092"
        assert Port("127.0.0.1", 19092) in stack.ports()

    def test_explicit_coap_settings_win(self) -> None:
        stack = config(coap_bind="0.0.0.0:5684", coap_routes="")
        assert (stack.coap_bind, dict(stack.coap_routes)) == (HostPort("0.0.0.0", 5684), {})
        assert stack.child_env("gateway")["PRESERVARIUM_COAP_ROUTES"] == ""

    def test_the_sandbox_address_follows_its_listen_address(self) -> None:
        assert config(sandbox_listen="0.0.0.0:6000").sandbox_addr == "127.0.0.1:6000"
        assert config(sandbox_listen="0.0.0.0:6000", sandbox_addr="box:1").sandbox_addr == "box:1"


class TestMetricsPorts:
    @pytest.mark.parametrize(
        ("setting", "expected"),
        [(None, (9464, 9465)), (0, (0, 0)), (7000, (7000, 7001))],
    )
    def test_from_the_setting(self, setting: int | None, expected: tuple[int, int]) -> None:
        ports = metrics_ports(setting, UpOptions())
        assert (ports["gateway"], ports["sandbox"]) == expected

    def test_options_win(self) -> None:
        ports = metrics_ports(0, UpOptions(gateway_metrics_port=8000, sandbox_metrics_port=8001))
        assert ports == {"gateway": 8000, "sandbox": 8001}

    def test_the_last_port_leaves_no_room_for_the_sandbox(self) -> None:
        with pytest.raises(ConfigError, match="PRESERVARIUM_METRICS_PORT"):
            metrics_ports(65535, UpOptions())


class TestSummary:
    def test_next_commands_of_a_default_stack(self) -> None:
        assert next_commands(config()) == [
            "preservarium simulate efento",
            "preservarium command send 282c02000001 set_config "
            """--params '{"measurement_period_base": 120, "transmission_interval": 600}' """
            "--force",
            "preservarium tail parsed",
        ]

    def test_next_commands_find_a_stack_elsewhere(self) -> None:
        stack = config(UpOptions(kafka_port=19092), coap_bind="0.0.0.0:5684")
        simulate, _, tail = next_commands(stack)
        kafka = "PRESERVARIUM_KAFKA_BOOTSTRAP=127.0.0.1:19092"
        assert simulate == f"{kafka} preservarium simulate efento --gateway 127.0.0.1:5684"
        assert tail == f"{kafka} preservarium tail parsed"

    def test_endpoints(self, tmp_path: Path) -> None:
        stack = config(database_url=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
        report = StackReport(pids={"kafka": 10, "sandbox": 11, "gateway": 12})
        lines = dict(endpoints(stack, report))
        assert lines["database"] == f"SQLite {tmp_path}/db.sqlite"
        assert lines["processes"] == "pids kafka 10, sandbox 11, gateway 12"
        assert lines["metrics"] == (
            "gateway http://127.0.0.1:9464/metrics, sandbox http://127.0.0.1:9465/metrics"
        )
        assert lines["parsers"] == "none"
        assert lines["operator API"].startswith("http://127.0.0.1:8080/api/docs")

    def test_the_operator_api_follows_its_setting(self) -> None:
        stack = config(api_listen="0.0.0.0:18080")
        assert stack.child_env("gateway")["PRESERVARIUM_API_LISTEN"] == "0.0.0.0:18080"
        assert Port("0.0.0.0", 18080) in stack.ports()
        assert dict(endpoints(stack, StackReport(pids={})))["operator API"].startswith(
            "http://127.0.0.1:18080/api/docs"
        )
        off = config(api_listen="")
        assert off.child_env("gateway")["PRESERVARIUM_API_LISTEN"] == ""
        assert all(port.port != 8080 for port in off.ports())
