"""`preservarium-gateway-probe`: the gateway image's health probe, a CoAP
`GET /.well-known/core` that is healthy on `2.05 Content`.

The gateway answers there `5.03` while one of its background loops is down. The request is
built by hand (a dozen bytes): aiocoap's message class costs a third of a second to import
on every healthcheck and no longer lets a caller pick the message id and token. See
`preservarium.probing` for the exit codes; `preservarium probe gateway` runs the same code.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import NoReturn

from preservarium.probing import ProbeArguments, addresses, local_address, probe_settings, report
from preservarium.settings import HostPort

WELL_KNOWN_CORE = (b".well-known", b"core")
CON, ACK = 0, 2
GET, CONTENT = 0x01, 0x45  # 0.01 and 2.05, as class << 5 | detail
URI_PATH = 11
# Resend a lost request this often (a loopback datagram is rarely lost; a busy gateway may be).
RESEND_EVERY_S = 1.0


def well_known_core_request(mid: int, token: bytes) -> bytes:
    """A confirmable `GET /.well-known/core` (every segment is under 13 bytes, so each
    option fits the short form)."""
    header = struct.pack("!BBH", 0x40 | (CON << 4) | len(token), GET, mid) + token
    options = b""
    delta = URI_PATH
    for segment in WELL_KNOWN_CORE:
        options += bytes([(delta << 4) | len(segment)]) + segment
        delta = 0
    return header + options


def dotted(code: int) -> str:
    """A CoAP code as people write it (`2.05`)."""
    return f"{code >> 5}.{code & 0x1F:02d}"


def answer_code(datagram: bytes, *, mid: int, token: bytes) -> int | None:
    """The code of the response to our request, or None for any other datagram (an empty
    ACK of a separate response also gives None: the response itself follows)."""
    if len(datagram) < 4 + len(token) or datagram[0] >> 6 != 1:
        return None
    kind, token_length = (datagram[0] >> 4) & 0x3, datagram[0] & 0x0F
    code, their_mid = datagram[1], int.from_bytes(datagram[2:4], "big")
    if code == 0 or datagram[4 : 4 + token_length] != token:
        return None
    if kind == ACK and their_mid != mid:
        return None
    return code


def check_gateway(address: HostPort, *, timeout_s: float) -> tuple[bool, str]:
    """GET /.well-known/core from one gateway; (answered 2.05, what it answered)."""
    mid, token = int.from_bytes(os.urandom(2), "big"), os.urandom(4)
    request = well_known_core_request(mid, token)
    deadline = time.monotonic() + timeout_s
    try:
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        # Not connected: a connected socket turns "nobody listens yet" (an ICMP error) into
        # an exception, where the probe should keep asking until its timeout.
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            while (left := deadline - time.monotonic()) > 0:
                sock.sendto(request, (address.host, address.port))
                sock.settimeout(min(left, RESEND_EVERY_S))
                code = _receive(sock, mid=mid, token=token)
                if code is not None:
                    return code == CONTENT, f"answered {dotted(code)}"
    except OSError as exc:
        return False, f"cannot reach it: {exc.strerror or exc}"
    return False, f"no answer within {timeout_s:g} s"


def _receive(sock: socket.socket, *, mid: int, token: bytes) -> int | None:
    """Our response's code, or None once the socket's timeout passes."""
    try:
        while True:
            code = answer_code(sock.recv(2048), mid=mid, token=token)
            if code is not None:
                return code
    except TimeoutError:
        return None


def probe_gateway(address: str | None, *, timeout_s: float) -> NoReturn:
    """Probe the gateway at `address` (default: this host, the port of
    PRESERVARIUM_COAP_BIND) and exit."""
    if address is None:
        target = local_address(probe_settings().coap_bind)
    else:
        (target, *rest) = addresses(address)
        if rest:
            report(False, "give one HOST:PORT")
    if not target.port:
        report(False, f"no port to probe in {target}: give HOST:PORT")
    ok, seen = check_gateway(target, timeout_s=timeout_s)
    report(ok, f"gateway {target}: {seen}")


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point."""
    parser = ProbeArguments(
        prog="preservarium-gateway-probe",
        description="CoAP GET /.well-known/core: exit 0 if the gateway answers 2.05 Content.",
    )
    parser.add_argument(
        "address", nargs="?", metavar="HOST:PORT",
        help="Default: this host, the port of PRESERVARIUM_COAP_BIND.",
    )  # fmt: skip
    parser.add_timeout()
    args = parser.parse_args(argv)
    probe_gateway(args.address, timeout_s=args.timeout)
