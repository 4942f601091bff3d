"""Ports checked before anything starts, and the services' JSON logs made compact."""

from __future__ import annotations

import socket

import pytest
from preservarium_tools.embedded.errors import PortInUseError
from preservarium_tools.embedded.logview import LogLine, render
from preservarium_tools.embedded.ports import Port, ensure_free

from tests.support.net import free_port


class TestPorts:
    def test_free_ports_pass(self) -> None:
        ensure_free([Port("127.0.0.1", free_port()), Port("127.0.0.1", 0, "udp")])

    @pytest.mark.parametrize("protocol", ["tcp", "udp"])
    def test_a_taken_port_names_itself(self, protocol: str) -> None:
        kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as holder:
            holder.bind(("127.0.0.1", 0))
            if protocol == "tcp":
                holder.listen()
            port = holder.getsockname()[1]
            with pytest.raises(PortInUseError) as caught:
                ensure_free([Port("127.0.0.1", port, "tcp" if protocol == "tcp" else "udp")])
        assert (caught.value.port, caught.value.protocol) == (port, protocol)
        assert str(caught.value) == (
            f"port {port}/{protocol} is in use: is another preservarium up running?"
        )


class TestLogView:
    def test_a_json_line_becomes_message_and_fields(self) -> None:
        line = (
            '{"ts": "2025-01-01T00:00:00.000Z", "level": "info", "logger": "x", '
            '"msg": "gateway serving", "coap_bind": "127.0.0.1:5683", "routes": {"m": "efento"}}'
        )
        assert render(line) == LogLine(
            "info", 'gateway serving coap_bind=127.0.0.1:5683 routes={"m":"efento"}'
        )

    def test_an_exception_keeps_its_lines(self) -> None:
        line = '{"level": "error", "msg": "boom", "exc": "Traceback\\n  line 1"}'
        assert render(line) == LogLine("error", "boom", ("Traceback", "  line 1"))

    @pytest.mark.parametrize("line", ["tansu broker 0.6.0", "{not json", '{"no": "msg"}', "[1]"])
    def test_other_lines_pass_unchanged(self, line: str) -> None:
        assert render(line) == LogLine(None, line)
