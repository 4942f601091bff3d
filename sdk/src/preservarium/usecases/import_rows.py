"""Reading a device import file: CSV with a header, a JSON list or a YAML list of rows
`id, type[, auth][, attributes]`. Every row is checked; every bad row is reported with
where it is (its line in CSV and YAML, its index in every format)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

from preservarium.attributes import InvalidAttributesError, checked_attributes
from preservarium.identity.kinds import AuthKind
from preservarium.ids import is_device_id, is_device_type
from preservarium.usecases.errors import FieldError, InvalidInputError
from preservarium.yaml_text import compose_untrusted, construct_untrusted

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_ROWS = 100_000
COLUMNS = ("id", "type", "auth", "attributes")
REQUIRED = ("id", "type")


class ImportFormat(StrEnum):
    """The formats an import file may have."""

    CSV = "csv"
    JSON = "json"
    YAML = "yaml"

    @classmethod
    def guess(cls, name: str) -> ImportFormat | None:
        """The format a file name or a media type names, or None."""
        lowered = name.lower().split(";")[0].strip()
        for fmt, hints in _HINTS.items():
            if any(lowered.endswith(hint) for hint in hints):
                return fmt
        return None


_HINTS = {
    ImportFormat.CSV: (".csv", "text/csv"),
    ImportFormat.JSON: (".json", "application/json"),
    ImportFormat.YAML: (".yaml", ".yml", "application/yaml", "application/x-yaml", "text/yaml"),
}


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One valid row. `index` counts rows from 1; `line` is its line in the file (None in
    JSON). `auth` and `attributes` are None when the row does not give them."""

    index: int
    line: int | None
    device_id: str
    device_type: str
    auth: AuthKind | None
    attributes: dict[str, Any] | None

    @property
    def where(self) -> str:
        """`row N` and, when known, `line L`: how a report names the row."""
        return row_label(self.index, self.line)


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that cannot be imported: its index (to keep the file's order) and why."""

    index: int
    error: FieldError


def row_label(index: int, line: int | None) -> str:
    """`row N (line L)`."""
    return f"row {index}" + ("" if line is None else f" (line {line})")


def read_rows(data: bytes, fmt: ImportFormat) -> tuple[list[ImportRow], list[RowError]]:
    """The valid rows of an import file and a FieldError for each bad one, by row;
    InvalidInputError when the file itself cannot be read."""
    if len(data) > MAX_FILE_BYTES:
        raise _refused(f"the file is over {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _refused("the file is not UTF-8") from None
    items = _csv_items(text) if fmt is ImportFormat.CSV else _structured(text, fmt)
    if len(items) > MAX_ROWS:
        raise _refused(f"the file has over {MAX_ROWS} rows")
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    seen: dict[str, str] = {}
    for index, (line, item) in enumerate(items, start=1):
        where = row_label(index, line)
        try:
            row = _row(index, line, item)
        except ValueError as exc:
            errors.append(RowError(index, FieldError(where, str(exc))))
            continue
        if row.device_id in seen:
            duplicate = f"device {row.device_id!r} is also {seen[row.device_id]}"
            errors.append(RowError(index, FieldError(where, duplicate)))
            continue
        seen[row.device_id] = where
        rows.append(row)
    return rows, errors


def _refused(message: str) -> InvalidInputError:
    return InvalidInputError(message, errors=[FieldError("file", message)], exit_code=1)


def _csv_items(text: str) -> list[tuple[int | None, object]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise _refused("the CSV file is empty: it needs a header line (id,type,...)")
        names = [name.strip().lower() for name in header]
        unknown = [name for name in names if name not in COLUMNS]
        missing = [name for name in REQUIRED if name not in names]
        if unknown or missing or len(set(names)) != len(names):
            raise _refused(
                f"the CSV header must name the columns {', '.join(COLUMNS[:2])} and "
                f"optionally {', '.join(COLUMNS[2:])}, each once; got {','.join(header)!r}"
            )
        items: list[tuple[int | None, object]] = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue  # blank lines are not rows
            line = reader.line_num
            if len(cells) != len(names):
                items.append((line, f"has {len(cells)} cells, the header {len(names)}"))
                continue
            items.append((line, _csv_object(dict(zip(names, cells, strict=True)))))
    except csv.Error as exc:
        raise _refused(f"the CSV file cannot be read at line {reader.line_num}: {exc}") from None
    return items


def _csv_object(cells: dict[str, str]) -> object:
    item: dict[str, object] = {key: value.strip() for key, value in cells.items()}
    for key in ("auth", "attributes"):
        if item.get(key) == "":
            del item[key]
    text = item.get("attributes")
    if isinstance(text, str):
        try:
            item["attributes"] = json.loads(text)
        except ValueError:
            return "attributes: not a JSON object"
    return item


def _structured(text: str, fmt: ImportFormat) -> list[tuple[int | None, object]]:
    try:
        if fmt is ImportFormat.JSON:
            loaded = json.loads(text)
            lines: list[int | None] = [None] * len(loaded) if isinstance(loaded, list) else []
        else:
            node = compose_untrusted(text)
            loaded = construct_untrusted(node)
            lines = _yaml_lines(node)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _refused(f"the file is not valid {fmt.value.upper()}: {reason}") from None
    if not isinstance(loaded, list):
        raise _refused(f"the {fmt.value.upper()} file must hold a list of rows")
    if len(lines) != len(loaded):
        lines = [None] * len(loaded)
    return list(zip(lines, loaded, strict=True))


def _yaml_lines(node: yaml.Node | None) -> list[int | None]:
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in node.value]


def _row(index: int, line: int | None, item: object) -> ImportRow:
    if isinstance(item, str):  # a CSV line refused while it was read
        raise ValueError(item)
    if not isinstance(item, dict):
        raise ValueError("must be an object with id and type")
    unknown = sorted(str(key) for key in item if key not in COLUMNS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}: use {', '.join(COLUMNS)}")
    device_id, device_type = item.get("id"), item.get("type")
    if not isinstance(device_id, str) or not is_device_id(device_id):
        raise ValueError(f"id {device_id!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    if not isinstance(device_type, str) or not is_device_type(device_type):
        raise ValueError(f"type {device_type!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ -")
    return ImportRow(index, line, device_id, device_type, _auth(item.get("auth")),
                     _attributes(item.get("attributes")))  # fmt: skip


def _auth(value: object) -> AuthKind | None:
    if value is None:
        return None
    try:
        return AuthKind(str(value).strip().lower())
    except ValueError:
        kinds = ", ".join(kind.value for kind in AuthKind)
        raise ValueError(f"auth {value!r}: use one of {kinds}") from None


def _attributes(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    # The registry's own bounds (size, depth, strict JSON), so that a row it would refuse
    # is reported as a bad row rather than failing the write.
    try:
        return dict(checked_attributes(value))
    except InvalidAttributesError as exc:
        raise ValueError(f"attributes: {exc}") from None
