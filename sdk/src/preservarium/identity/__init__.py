"""Device identity: credential kinds, their generation, secrets at rest, OSCORE replay windows.

The gateway's policy and the CLI build on these; the SQL side is
`preservarium.repositories.credentials` and `preservarium.repositories.replay_windows`.
"""

from preservarium.identity.documents import (
    CredentialDocument,
    NoCredentialDocument,
    OscoreDocument,
    PskDocument,
    TokenDocument,
)
from preservarium.identity.kinds import AuthKind, OscoreMaterial
from preservarium.identity.replay import REPLAY_WINDOW_SIZE, ReplayWindow
from preservarium.identity.secretbox import SecretBox

__all__ = [
    "REPLAY_WINDOW_SIZE",
    "AuthKind",
    "CredentialDocument",
    "NoCredentialDocument",
    "OscoreDocument",
    "OscoreMaterial",
    "PskDocument",
    "ReplayWindow",
    "SecretBox",
    "TokenDocument",
]
