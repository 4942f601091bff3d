"""The sandbox client's reading of answers: what a newer sandbox may send."""

from __future__ import annotations

from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium.sandbox_client import error_kind_name


def test_every_known_kind_has_its_contract_name() -> None:
    assert error_kind_name(pb.ERROR_KIND_TIMEOUT) == "timeout"
    assert error_kind_name(pb.ERROR_KIND_INVALID_OUTPUT) == "invalid_output"


def test_a_kind_this_client_does_not_know_is_a_runtime_error_not_an_exception() -> None:
    unknown = max(pb.ErrorKind.values()) + 1
    assert error_kind_name(unknown) == "runtime_error"
