"""One CoAP request and its answer, with RFC 7252 retransmission of confirmable requests."""

from __future__ import annotations

import os
from dataclasses import dataclass

from preservarium.errors import PreservariumError

from preservarium_tools import coapwire


class NoAnswerError(PreservariumError):
    """The gateway did not answer a request, retransmissions included."""


@dataclass(frozen=True, slots=True)
class Retransmission:
    """RFC 7252 section 4.8 timing: the first wait and how many times to send again."""

    ack_timeout_s: float = 2.0
    max_retransmit: int = 2
    non_timeout_s: float = 5.0
    # After an empty ACK: how long the separate response may take.
    response_timeout_s: float = 30.0


async def exchange(
    client: coapwire.CoapClient,
    code: int,
    path: str,
    payload: bytes = b"",
    *,
    confirmable: bool,
    timing: Retransmission = Retransmission(),
) -> coapwire.CoapMessage:
    """Send a request and return its answer.

    A confirmable request is sent again, with the same message id and token, after
    2, 4, ... seconds, as a device does, until the gateway acknowledges it; the gateway
    must answer a retransmission the same way and record the contact once. An empty ACK
    (the gateway took longer than it waits before answering separately) ends the
    retransmissions, and the response follows on its own. A non-confirmable request is
    sent once.
    """
    message = coapwire.request(
        code,
        path,
        mid=client.next_mid(),
        token=os.urandom(4),
        payload=payload,
        confirmable=confirmable,
    )
    if not confirmable:
        return await _attempt(client, message, timing.non_timeout_s)
    try:
        return await client.send_confirmable(
            message, ack_timeout_s=timing.ack_timeout_s, max_retransmit=timing.max_retransmit,
            response_timeout_s=timing.response_timeout_s,
        )  # fmt: skip
    except TimeoutError:
        raise NoAnswerError("no answer, retransmissions included") from None


async def _attempt(
    client: coapwire.CoapClient, message: coapwire.CoapMessage, timeout_s: float
) -> coapwire.CoapMessage:
    try:
        return await client.send(message, timeout_s=timeout_s)
    except TimeoutError:
        raise NoAnswerError(f"no answer in {timeout_s:g} s") from None
