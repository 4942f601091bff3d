"""Errors of the use cases, with the data a CLI line or a problem document needs."""

from __future__ import annotations

from dataclasses import dataclass

from preservarium.errors import PreservariumError


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid input: where (a field name, or a row of an import) and why."""

    field: str
    message: str


class InvalidInputError(PreservariumError):
    """The input is refused before anything is done; `errors` lists each problem.

    `exit_code` is what the CLI exits with (2 for usage errors by default).
    """

    def __init__(self, message: str, *, errors: list[FieldError] | None = None,
                 exit_code: int = 2) -> None:  # fmt: skip
        super().__init__(message)
        self.errors = errors or [FieldError("", message)]
        self.exit_code = exit_code


def invalid(field: str, message: str, *, exit_code: int = 2) -> InvalidInputError:
    """An InvalidInputError about one field."""
    return InvalidInputError(message, errors=[FieldError(field, message)], exit_code=exit_code)
