"""The contact counter and latency: labelled by route, code, auth and outcome, each
contact counted once (the children are looked up once per label set, then reused)."""

from __future__ import annotations

from typing import Any, cast

import aiocoap
from aiocoap.numbers.codes import Code
from preservarium_gateway.authn import Presented
from preservarium_gateway.coap import GatewaySite
from preservarium_gateway.config import GatewayLimits
from preservarium_gateway.metrics import GatewayMetrics


def site(metrics: GatewayMetrics) -> GatewaySite:
    nothing = cast(Any, None)  # _count uses none of the contact's collaborators
    return GatewaySite(routes={"m": "efento"}, directory=nothing, pipeline=nothing,
                       admission=nothing, limits=GatewayLimits(), metrics=metrics)  # fmt: skip


def count(metrics: GatewayMetrics, **labels: str) -> float | None:
    return metrics.registry.get_sample_value("preservarium_gateway_contacts_total", labels)


def test_each_contact_is_counted_under_its_route_code_auth_and_outcome() -> None:
    metrics = GatewayMetrics()
    counting = site(metrics)
    cases = [("m", Code.CREATED, Presented()), ("m", Code.CREATED, Presented()),
             ("d", Code.UNAUTHORIZED, Presented(token="t")),
             ("d", Code.FORBIDDEN, Presented(dtls_device="a")),
             ("m", Code.TOO_MANY_REQUESTS, Presented()), ("?", Code.NOT_FOUND, Presented()),
             ("busy", Code.SERVICE_UNAVAILABLE, Presented())]  # fmt: skip
    for route, code, presented in cases:
        counting._count(route, aiocoap.Message(code=code), presented, 0.003)
    assert count(metrics, route="m", code="2.01", auth="none", outcome="accepted") == 2
    assert count(metrics, route="d", code="4.01", auth="token", outcome="unauthenticated") == 1
    assert count(metrics, route="d", code="4.03", auth="psk", outcome="forbidden") == 1
    assert count(metrics, route="m", code="4.29", auth="none", outcome="rate_limited") == 1
    assert count(metrics, route="?", code="4.04", auth="none", outcome="refused") == 1
    assert count(metrics, route="busy", code="5.03", auth="none", outcome="refused") == 1
    latency = metrics.registry.get_sample_value(
        "preservarium_gateway_contact_seconds_count", {"route": "m"}
    )
    assert latency == 3
