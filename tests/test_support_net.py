"""The suite's ports come from below the ephemeral range, one slice per xdist worker."""

from __future__ import annotations

import socket

import pytest

from tests.support import net


@pytest.mark.parametrize("workers", [4, 15, 40])
def test_worker_slices_are_disjoint_and_below_the_ephemeral_range(workers: int) -> None:
    floor = 32_768
    found = [net.worker_slice(f"gw{n}", floor, workers) for n in range(workers)]
    found.append(net.worker_slice("", floor, workers))  # the run's own process
    seen: set[int] = set()
    for ports in found:
        assert len(ports) >= net.MIN_SLICE
        assert ports.start >= net.FLOOR and ports.stop <= floor
        assert seen.isdisjoint(ports)
        seen.update(ports)


def test_a_worker_beyond_the_count_is_refused() -> None:
    with pytest.raises(RuntimeError, match="gw20"):
        net.worker_slice("gw20", 32_768, 4)


def test_a_host_without_room_below_falls_back_to_the_kernel() -> None:
    assert net.worker_slice("gw0", net.FLOOR + 100) == range(0)
    picker = net._Picker(range(0))
    assert picker.take() > 0


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    ports = [net.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    if net.worker_slice():  # a host whose ephemeral range starts low has no room below
        assert all(net.FLOOR <= port < net.ephemeral_floor() for port in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", ports[0]))
        tcp.bind(("127.0.0.1", ports[1]))


def test_a_port_someone_holds_is_passed_over() -> None:
    picker = net._Picker(net.worker_slice())
    ahead = picker.take()
    picker.cursor = picker.ports.index(ahead)  # it comes next again
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", ahead))  # UDP only: the TCP side of it is free
        assert picker.take() != ahead
