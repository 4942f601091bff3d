"""What a retransmitted confirmable request must get back (RFC 7252, 4.2 and 4.5)."""

from __future__ import annotations

from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient, CoapMessage


async def assert_answered_again(
    client: CoapClient, message: CoapMessage, first: CoapMessage
) -> None:
    """Send `message` again, as a device does when it missed the answer `first`.

    A piggy-backed `first` comes back as it was: same message id, code and payload. A
    `first` that came on its own (the gateway had acknowledged the request with an empty
    ACK, as aiocoap does once a request has taken 0.1 s, which a loaded machine takes) is
    not sent again: the retransmission gets that empty ACK.
    """
    if first.mtype == cw.ACK:
        again = await client.send(message)
        assert (again.mtype, again.mid, again.dotted_code, again.payload) == (
            first.mtype, first.mid, first.dotted_code, first.payload,
        )  # fmt: skip
    else:
        ack = await client.send_for_ack(message)
        assert (ack.mtype, ack.dotted_code, ack.mid) == (cw.ACK, "0.00", message.mid)
