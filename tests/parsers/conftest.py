"""The real sandbox service of tests/sandbox, for running the shipped parsers."""

from tests.sandbox.conftest import *  # noqa: F403
