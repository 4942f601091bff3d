"""Who a route contact is from: the id its parser's `identify()` names, held to the rules
of a path id and checked against what the contact proved and the device registry.

A route names a device type and trusts the payload for the device; the registry and the
contact's proof have the last word, and this is the one place that decides a mismatch.
An id out of the rules fails the contact as the parser's `invalid_output`. A contact
whose DTLS session or OSCORE context proved another device than the one named is
refused (`device_mismatch`, 4.03): it did authenticate, as someone else. So is an id
registered with another type than the route's: else a payload of one type could take
the commands of a device of another, formatted by the wrong parser, and speak for it on
`uplink.parsed`.

The registry copy in memory answers (no query per contact; it is reloaded every few
seconds). When a command waits for the id, the database is asked: a registration newer
than the copy must not hand a command over. When it cannot be asked, the contact is
delivered without a command.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from preservarium.contract.kinds import ErrorKind
from preservarium.errors import RepositoryError
from preservarium.ids import is_device_id

from preservarium_gateway.directory import DeviceDirectory
from preservarium_gateway.pending_commands import PendingCommandIndex

log = logging.getLogger("preservarium.gateway.identity")
INVALID_ID = "identify() must return 1 to 64 characters of A-Z a-z 0-9 . _ : - (not . or ..)"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the gateway, not the parser, refuses what a route contact's parser named."""

    kind: ErrorKind
    message: str
    forbidden: bool = False  # True: the device is told 4.03, not its success code
    proven_other: bool = False  # True: the contact authenticated, as another device


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a contact is from, as far as the gateway accepts it."""

    device_id: str | None
    refusal: Refusal | None = None
    verified: bool = True  # False: the registry could not be asked, so no command


class RouteIdentities:
    """Checks the ids that route contacts' parsers name."""

    def __init__(self, *, directory: DeviceDirectory, pending: PendingCommandIndex) -> None:
        self._directory = directory
        self._pending = pending

    async def check(
        self, device_id: str, *, route: str, device_type: str, proven: str | None = None
    ) -> Identity:
        """The identity of a contact on `route` (for `device_type`) that names `device_id`;
        `proven` is the device its DTLS session or OSCORE context authenticated, if any."""
        if not is_device_id(device_id):
            return Identity(None, Refusal(ErrorKind.INVALID_OUTPUT, INVALID_ID))
        if proven is not None and proven != device_id:
            message = f"the contact authenticated as {proven}; identify() named {device_id}"
            refusal = Refusal(ErrorKind.DEVICE_MISMATCH, message, forbidden=True, proven_other=True)
            return Identity(device_id, refusal)
        try:
            registered = await self._registered_type(device_id)
        except RepositoryError as exc:
            log.warning("device lookup failed", extra={"device_id": device_id,
                        "error": str(exc)})  # fmt: skip
            return Identity(device_id, verified=False)
        if registered is None or registered == device_type:
            return Identity(device_id)
        message = (
            f"device {device_id} is registered as type {registered}; "
            f"route /{route} is for type {device_type}"
        )
        return Identity(device_id, Refusal(ErrorKind.DEVICE_MISMATCH, message, forbidden=True))

    async def _registered_type(self, device_id: str) -> str | None:
        known = self._directory.known_type(device_id)
        if known is not None or device_id not in self._pending:
            return known
        return await self._directory.device_type(device_id)
