"""The scale scenario's helpers: the UDP drop counter, the figures derived from a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scale import cpu_figures, median_run, not_2xx, ratios, udp_receive_drops


def test_udp_receive_drops_read_from_snmp(tmp_path: Path) -> None:
    snmp = tmp_path / "snmp"
    snmp.write_text(
        "Ip: Forwarding DefaultTTL\nIp: 1 64\n"
        "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n"
        "Udp: 603158 551 650 604544 649 0\n"
        "UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n"
        "UdpLite: 0 0 0 0 0 0\n"
    )
    assert udp_receive_drops(snmp) == 649
    assert udp_receive_drops() >= 0  # this machine's


def test_cpu_figures_count_the_service_processes_only() -> None:
    used = {"gateway": 1.0, "sandbox": 0.5, "workers": 0.5, "broker": 3.0, "loadgen": 9.0}
    figures = cpu_figures(used, 1000)
    assert figures["service_cpu_ms_per_contact"] == pytest.approx(2.0)
    assert figures["contacts_per_service_cpu_s"] == pytest.approx(500.0)
    assert figures["cpu_ms_per_contact"]["broker"] == pytest.approx(3.0)


def test_ratios_compare_processes_and_half_load() -> None:
    run = {"rate": 100.0, "service_cpu_ms_per_contact": 3.0, "timeouts": 0, "labels": {}}
    half = {
        "p50_ms": 2.0,
        "p99_ms": 9.0,
        "sent": 50,
        "answered": 49,
        "udp_receive_drops": 1,
        "timeouts": 1,
        "labels": {},
    }
    out = ratios(
        {
            "full": run,
            "full_2_processes": {**run, "rate": 150.0},
            "naive": {**run, "service_cpu_ms_per_contact": 1.0},
            "full_half_load": half,
        }
    )
    assert out["two_vs_one_process_throughput"] == pytest.approx(1.5)
    assert out["full_vs_naive_service_cpu"] == pytest.approx(3.0)
    assert (out["full_half_load_p99_ms"], out["full_half_load_unanswered"]) == (9.0, 1)


def test_the_median_round_is_kept_with_every_round_beside_it() -> None:
    rounds = [{"rate": rate, "service_cpu_ms_per_contact": cpu}
              for rate, cpu in ((300.0, 2.0), (100.0, 4.0), (200.0, 3.0))]  # fmt: skip
    kept = median_run(rounds)
    assert (kept["rate"], kept["service_cpu_ms_per_contact"]) == (200.0, 3.0)
    assert kept["round_rates"] == [300.0, 100.0, 200.0]
    assert kept["round_service_cpu_ms_per_contact"] == [2.0, 4.0, 3.0]


def test_requests_not_served_are_counted() -> None:
    run = {"timeouts": 2, "labels": {"m": {"codes": {"2.01": 90, "4.29": 5, "5.03": 3}}}}
    assert not_2xx(run) == 10
