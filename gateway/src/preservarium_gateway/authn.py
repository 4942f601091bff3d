"""Does a contact authenticate as the device it names? The policy, from memory only.

What a contact presents (`Presented`) is read before anything else: the device a DTLS
session proved (its PSK identity) or an OSCORE context did (its kid), or a token
(Uri-Query `t=`, or on a route what the parser's `token()` found in the payload). The
device's credential kind comes from the directory's copy in memory, so a check costs no query: an
unauthenticated flood cannot cost a database round trip per datagram.

`required`: a contact must prove it is the device it names. `optional`: a device
registered with `none` (or an unregistered route device) may present nothing; a device
registered with credentials must still present them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from preservarium.identity.kinds import AuthKind
from preservarium.identity.tokens import token_hash, token_matches
from preservarium.settings import DeviceAuthMode

from preservarium_gateway.directory import DeviceDirectory

TOKEN_QUERY = "t"
# Compared against when the device has no token, so a check costs the same either way.
_NO_TOKEN_HASH = token_hash("")


class AuthFailure(StrEnum):
    """Why a contact was not taken as the device it names (the metric's `reason`)."""

    MISSING = "missing"  # nothing presented, and the device (or the mode) needs it
    BAD_TOKEN = "bad_token"  # a token that is not the device's
    OTHER_DEVICE = "other_device"  # a DTLS session or OSCORE context of another device
    OSCORE_UNKNOWN_KID = "oscore_unknown_kid"  # no device sends with the request's kid
    OSCORE_DECRYPT_FAILED = "oscore_decrypt_failed"  # not protected with the kid's context
    OSCORE_REPLAY = "oscore_replay"  # a sequence number some gateway accepted already


@dataclass(frozen=True, slots=True)
class Presented:
    """What a contact offered as proof, before any check."""

    dtls_device: str | None = None
    token: str | None = None
    oscore_device: str | None = None

    @property
    def proven_device(self) -> str | None:
        """The device a DTLS session or an OSCORE context proved, before any check."""
        return self.dtls_device if self.dtls_device is not None else self.oscore_device

    @property
    def proven_kind(self) -> AuthKind:
        """How `proven_device` was proven (PSK or OSCORE)."""
        return AuthKind.PSK if self.dtls_device is not None else AuthKind.OSCORE

    @property
    def label(self) -> str:
        """The way the contact tried to authenticate, for metrics."""
        if self.proven_device is not None:
            return self.proven_kind.value
        return AuthKind.TOKEN.value if self.token is not None else AuthKind.NONE.value


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check: how the device authenticated, or why it did not."""

    authenticated: AuthKind | None = None  # None with no failure: accepted as `none`
    failure: AuthFailure | None = None

    @property
    def ok(self) -> bool:
        """Whether the contact may go on as the device it names."""
        return self.failure is None


class DeviceAuthenticator:
    """Applies the mode to what a contact presents and what the directory holds."""

    def __init__(self, *, mode: DeviceAuthMode, directory: DeviceDirectory) -> None:
        self.mode = mode
        self._directory = directory

    def check(self, device_id: str, presented: Presented) -> Verdict:
        """Whether a contact presenting `presented` speaks for `device_id`."""
        proven = presented.proven_device
        if proven is not None:
            # The handshake used the device's current key (fetched per handshake), the
            # OSCORE context's replay window was current in the database: that is proof
            # enough, even if this copy of the kinds is a few seconds old.
            if proven != device_id:
                return Verdict(failure=AuthFailure.OTHER_DEVICE)
            return Verdict(presented.proven_kind)
        entry = self._directory.auth_entry(device_id)
        # A token is checked only against a device with credentials: Efento devices send a
        # cloud_token (often their IMEI) whether or not they were given one.
        if presented.token is not None and entry.auth is not AuthKind.NONE:
            stored = entry.token_sha256 if entry.auth is AuthKind.TOKEN else None
            matches = token_matches(presented.token, stored or _NO_TOKEN_HASH)
            if stored is not None and matches:
                return Verdict(AuthKind.TOKEN)
            return Verdict(failure=AuthFailure.BAD_TOKEN)
        if entry.auth is not AuthKind.NONE or self.mode is DeviceAuthMode.REQUIRED:
            return Verdict(failure=AuthFailure.MISSING)
        return Verdict()


def split_token(query: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """The token in a Uri-Query (`t=`), and the query without it.

    The token never reaches the parser (untrusted code) or a record.
    """
    if TOKEN_QUERY not in query:
        return None, query
    rest = dict(query)
    return rest.pop(TOKEN_QUERY), rest
