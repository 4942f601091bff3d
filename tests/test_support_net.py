"""The suite's ports come from below the ephemeral range, one slice per xdist worker."""

from __future__ import annotations

import socket

from tests.support import net


def test_worker_slices_are_disjoint_and_below_the_ephemeral_range() -> None:
    floor = 32_768
    slices = [net.worker_slice(f"gw{n}", floor) for n in range(net.SLICES - 1)]
    slices.append(net.worker_slice("", floor))  # a run without workers
    seen: set[int] = set()
    for ports in slices:
        assert len(ports) >= net.MIN_SLICE
        assert ports.start >= net.FLOOR and ports.stop <= floor
        assert seen.isdisjoint(ports)
        seen.update(ports)


def test_a_host_without_room_below_falls_back_to_the_kernel() -> None:
    assert net.worker_slice("gw0", net.FLOOR + 100) == range(0)
    picker = net._Picker(range(0))
    assert picker.take() > 0


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    ports = [net.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
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
