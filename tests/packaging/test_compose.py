"""compose.yaml says what the issue and docs/operations.md ask."""

from __future__ import annotations

import os
import re
import tomllib
from typing import Any

import pytest
from preservarium.settings import load_settings
from sqlalchemy.engine import make_url

from tests.packaging import compose_file
from tests.packaging.replay import ROOT
from tests.packaging.test_dockerfiles import documented_variables

VARIABLES = {"POSTGRES_PASSWORD": "s3cret", "PRESERVARIUM_SECRET_KEY": "k" * 44}
LONG_RUNNING = ("postgres", "kafka", "sandbox", "gateway")
BUILT = ("migrate", "sandbox", "gateway")
PINNED = {
    "postgres": re.compile(r"^postgres:\d+\.\d+"),
    "kafka": re.compile(r"^apache/kafka:\d+\.\d+\.\d+$"),
}
HEALTHY = {"condition": "service_healthy"}
COMPLETED = {"condition": "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_file.load(VARIABLES)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def env(services: dict[str, dict[str, Any]], name: str) -> dict[str, str]:
    return compose_file.environment(services[name])


def networks(services: dict[str, dict[str, Any]], name: str) -> set[str]:
    return set(services[name].get("networks") or ["default"])


def test_the_five_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"postgres", "kafka", "migrate", "sandbox", "gateway"}


def test_the_password_must_be_given() -> None:
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        compose_file.load({})


@pytest.mark.parametrize("name", ["postgres", "kafka"])
def test_official_images_are_pinned(services: dict[str, dict[str, Any]], name: str) -> None:
    image = services[name]["image"]
    assert PINNED[name].match(image), image
    assert "latest" not in image
    assert "build" not in services[name]


@pytest.mark.parametrize("name", BUILT)
def test_our_images_are_built_and_tagged_with_their_version(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    dockerfile = services[name]["build"]["dockerfile"]
    service = "tools" if name == "migrate" else name
    assert dockerfile == f"Dockerfile.{service}"
    assert services[name]["build"]["context"] == "."
    project = tomllib.loads((ROOT / service / "pyproject.toml").read_text())["project"]
    assert services[name]["image"] == f"preservarium-{service}:{project['version']}"


@pytest.mark.parametrize("name", ["postgres", "kafka"])
def test_data_lives_in_named_volumes(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], name: str
) -> None:
    (mount,) = services[name]["volumes"]
    volume = mount.split(":")[0]
    assert volume in compose["volumes"]


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthchecks_and_restart(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    check = services[name]["healthcheck"]
    assert check["test"][0] == "CMD" and not check.get("disable")
    assert {"interval", "timeout", "retries", "start_period"} <= set(check)
    assert services[name]["restart"] == "unless-stopped"


def test_healthcheck_commands(services: dict[str, dict[str, Any]]) -> None:
    test = {name: services[name]["healthcheck"]["test"][1:] for name in LONG_RUNNING}
    assert test["postgres"][0] == "pg_isready"
    assert test["kafka"][0].endswith("kafka-broker-api-versions.sh")
    assert test["sandbox"][:2] == ["preservarium-sandbox-probe", "--local"]
    assert test["gateway"][:1] == ["preservarium-gateway-probe"]


def test_migrate_is_one_shot(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert [*migrate["entrypoint"], *migrate["command"]] == ["preservarium", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": HEALTHY}
    assert migrate["healthcheck"] == {"disable": True}


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    assert services["sandbox"]["depends_on"] == {"postgres": HEALTHY, "migrate": COMPLETED}
    assert services["gateway"]["depends_on"] == {
        "postgres": HEALTHY, "kafka": HEALTHY, "migrate": COMPLETED, "sandbox": HEALTHY,
    }  # fmt: skip


def test_kafka_is_a_single_kraft_node(services: dict[str, dict[str, Any]]) -> None:
    kafka = env(services, "kafka")
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["CLUSTER_ID"]
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{kafka['KAFKA_NODE_ID']}@")
    assert "PLAINTEXT://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert kafka["KAFKA_LOG_DIRS"] == services["kafka"]["volumes"][0].split(":")[1]


def test_gateway_publishes_coap_over_udp(services: dict[str, dict[str, Any]]) -> None:
    assert "5683:5683/udp" in services["gateway"]["ports"]
    assert "5684:5684/udp" in services["gateway"]["ports"]  # CoAP over DTLS


def test_gateway_serves_the_operator_api_on_loopback(services: dict[str, dict[str, Any]]) -> None:
    gateway = env(services, "gateway")
    assert gateway["PRESERVARIUM_API_LISTEN"] == "0.0.0.0:8080"
    assert "127.0.0.1:8080:8080/tcp" in services["gateway"]["ports"]


def test_devices_must_authenticate(services: dict[str, dict[str, Any]]) -> None:
    gateway = env(services, "gateway")
    assert gateway["PRESERVARIUM_DEVICE_AUTH"] == "required"
    assert gateway["PRESERVARIUM_COAPS_BIND"] == "0.0.0.0:5684"
    # From the operator's environment (.env), never written in the file; the tools seal
    # the PSKs and OSCORE secrets of `docker compose run --rm migrate device register`.
    key = VARIABLES["PRESERVARIUM_SECRET_KEY"]
    assert gateway["PRESERVARIUM_SECRET_KEY"] == key
    assert env(services, "migrate")["PRESERVARIUM_SECRET_KEY"] == key


def test_sandbox_container_is_locked_down(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    sandbox = services["sandbox"]
    assert sandbox["read_only"] is True
    (tmpfs,) = sandbox["tmpfs"]
    assert tmpfs.startswith("/tmp:") and "size=" in tmpfs
    assert sandbox["mem_limit"] and sandbox["pids_limit"] > 0
    assert sandbox["cap_drop"] == ["ALL"] and "cap_add" not in sandbox
    assert "no-new-privileges:true" in sandbox["security_opt"]
    assert "privileged" not in sandbox and "ports" not in sandbox
    (network,) = networks(services, "sandbox")
    assert compose["networks"][network]["internal"] is True


def test_who_reaches_whom(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    assert not networks(services, "sandbox") & networks(services, "kafka")
    assert networks(services, "sandbox") & networks(services, "postgres")
    assert networks(services, "gateway") & networks(services, "sandbox")
    assert networks(services, "gateway") & networks(services, "kafka")
    assert networks(services, "migrate") & networks(services, "postgres")
    # The tools run the operator's Kafka commands too (`tail`, `command send`).
    assert networks(services, "migrate") & networks(services, "kafka")
    outside = [
        n for n in networks(services, "gateway") if not compose["networks"][n].get("internal")
    ]
    assert outside, "the gateway needs a network with a route out, for devices and Kafka"


@pytest.mark.parametrize("name", BUILT)
def test_our_containers_drop_privileges(services: dict[str, dict[str, Any]], name: str) -> None:
    assert services[name]["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in services[name]["security_opt"]


def test_settings_are_documented(services: dict[str, dict[str, Any]]) -> None:
    used = {name for service in BUILT for name in env(services, service)}
    assert used <= documented_variables()


def test_settings_values(services: dict[str, dict[str, Any]]) -> None:
    gateway, sandbox = env(services, "gateway"), env(services, "sandbox")
    assert gateway["PRESERVARIUM_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert gateway["PRESERVARIUM_SANDBOX_ADDR"] == "sandbox:50051"
    assert gateway["PRESERVARIUM_COAP_BIND"] == "0.0.0.0:5683"
    assert gateway["PRESERVARIUM_COAP_ROUTES"] == "m=efento,i=efento,c=efento,t=efento"
    assert sandbox["PRESERVARIUM_SANDBOX_LISTEN"] == "0.0.0.0:50051"
    assert "PRESERVARIUM_SANDBOX_WORKERS" in sandbox


def test_database_url_names_the_postgres_service(services: dict[str, dict[str, Any]]) -> None:
    postgres = env(services, "postgres")
    for name in BUILT:
        url = make_url(env(services, name)["PRESERVARIUM_DATABASE_URL"])
        assert url.drivername == "postgresql+asyncpg"
        assert (url.host, url.port) == ("postgres", 5432)
        assert url.username == postgres["POSTGRES_USER"]
        assert url.password == postgres["POSTGRES_PASSWORD"] == VARIABLES["POSTGRES_PASSWORD"]
        assert url.database == postgres["POSTGRES_DB"]


@pytest.mark.parametrize("name", BUILT)
def test_settings_load(
    services: dict[str, dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [key for key in os.environ if key.startswith("PRESERVARIUM_")]:
        monkeypatch.delenv(key)
    for key, value in env(services, name).items():
        monkeypatch.setenv(key, value)
    load_settings()


def test_the_gateway_runs_one_process_per_cpu_unless_told(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert env(services, "gateway")["PRESERVARIUM_GATEWAY_PROCESSES"] == "auto"
    told = compose_file.load({**VARIABLES, "PRESERVARIUM_GATEWAY_PROCESSES": "3"})
    assert (
        compose_file.environment(told["services"]["gateway"])["PRESERVARIUM_GATEWAY_PROCESSES"]
        == "3"
    )
    for key in [key for key in os.environ if key.startswith("PRESERVARIUM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PRESERVARIUM_GATEWAY_PROCESSES", "auto")
    assert load_settings().gateway_processes >= 1


def test_sandbox_replicas_are_one_unless_told(services: dict[str, dict[str, Any]]) -> None:
    assert str(services["sandbox"]["deploy"]["replicas"]) == "1"
    told = compose_file.load({**VARIABLES, "SANDBOX_REPLICAS": "3"})
    assert str(told["services"]["sandbox"]["deploy"]["replicas"]) == "3"
    # Replicas share the service's name: the gateway's one address reaches all of them.
    assert env(services, "gateway")["PRESERVARIUM_SANDBOX_ADDR"] == "sandbox:50051"
    assert "container_name" not in services["sandbox"] and "ports" not in services["sandbox"]
