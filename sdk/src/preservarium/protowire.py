"""Decode and encode the protobuf wire format without generated code.

This module is handed to untrusted parser scripts as a vetted namespace, so it keeps to
plain functions over plain values: buffers are `bytes` (or `bytearray`), numbers are `int`
and `float`, and results are `dict`, `list` and `tuple`. Nothing recurses: a nested
message comes back as `bytes` and the caller decodes it with another call to `decode`.
Every function runs in time linear in its input.

Malformed input raises `WireError` (a `ValueError`) whose message gives the byte offset
and the problem. An argument of the wrong type raises `TypeError`. The encoders refuse to
build more than `MAX_OUTPUT` bytes, so a script cannot use them to amplify memory.

Example::

    fields = decode(payload)
    temperature = to_float(first(fields, 1, 0))
    readings = packed_sint(first(fields, 2, b""))
    inner = decode(first(fields, 3, b""))
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import TypeVar, overload

__all__ = [
    "FIXED32",
    "FIXED64",
    "LEN",
    "MAX_OUTPUT",
    "VARINT",
    "WireError",
    "decode",
    "decode_fields",
    "encode",
    "encode_field",
    "encode_varint",
    "first",
    "last",
    "packed_fixed32",
    "packed_fixed64",
    "packed_floats",
    "packed_sint",
    "packed_varints",
    "to_double",
    "to_float",
    "to_int32",
    "to_int64",
    "zigzag_decode",
    "zigzag_encode",
]

VARINT = 0
"""Wire type 0: int32, int64, uint32, uint64, sint32, sint64, bool, enum."""
FIXED64 = 1
"""Wire type 1: fixed64, sfixed64, double."""
LEN = 2
"""Wire type 2: string, bytes, embedded messages, packed repeated fields."""
FIXED32 = 5
"""Wire type 5: fixed32, sfixed32, float."""

MAX_OUTPUT = 1 << 20
"""The most bytes `encode`, `encode_field` and `encode_varint` will produce (1 MiB)."""

MAX_FIELD_NUMBER = (1 << 29) - 1
_U32 = 1 << 32
_U64 = 1 << 64
_I32_MIN = -(1 << 31)
_I64_MIN = -(1 << 63)
_MAX_VARINT_BYTES = 10

_T = TypeVar("_T")
_D = TypeVar("_D")


class WireError(ValueError):
    """Malformed protobuf wire data; the message states the byte offset and the problem."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


# --- argument checks -------------------------------------------------------------------


def _buffer(data: object, name: str = "data") -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray):
        return bytes(data)
    raise TypeError(f"{name} must be bytes or bytearray, not {type(data).__name__}")


def _integer(value: object, name: str) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


def _in_range(value: int, low: int, high: int, name: str) -> int:
    """Check `low <= value < high`."""
    if not low <= value < high:
        raise ValueError(f"{name} {value} is out of range [{low}, {high - 1}]")
    return value


def _number(value: object, name: str) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"{name} {value} is too large for a double") from None
    raise TypeError(f"{name} must be a float or an int, not {type(value).__name__}")


def _sequence(value: object, name: str) -> list[object] | tuple[object, ...]:
    if isinstance(value, (list, tuple)):
        return value
    raise TypeError(f"{name} must be a list or a tuple, not {type(value).__name__}")


def _guard(size: int, what: str, limit: int = MAX_OUTPUT) -> None:
    if size > limit:
        raise ValueError(
            f"{what} would exceed the output limit of {MAX_OUTPUT} bytes "
            f"({size} bytes, {limit} available)"
        )


# --- decoding -------------------------------------------------------------------------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read the varint at `pos`; return its value and the offset just past it."""
    end = len(data)
    if pos < end and data[pos] < 0x80:
        return data[pos], pos + 1
    start = pos
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError(
                f"truncated varint at offset {start}: buffer ends at offset {end}", start
            )
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift >= 7 * _MAX_VARINT_BYTES:
            raise WireError(f"varint at offset {start} is longer than 10 bytes", start)
    if result >= _U64:
        raise WireError(f"varint at offset {start} is wider than 64 bits", start)
    return result, pos


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    out: list[tuple[int, int, int | bytes]] = []
    append = out.append
    end = len(data)
    pos = 0
    while pos < end:
        start = pos
        tag, pos = _read_varint(data, pos)
        number = tag >> 3
        wire_type = tag & 7
        if number == 0 or number > MAX_FIELD_NUMBER:
            raise WireError(
                f"invalid field number {number} at offset {start} "
                f"(must be 1 to {MAX_FIELD_NUMBER})",
                start,
            )
        value: int | bytes
        if wire_type == VARINT:
            value, pos = _read_varint(data, pos)
        elif wire_type == LEN:
            at = pos
            length, pos = _read_varint(data, pos)
            if length > end - pos:
                raise WireError(
                    f"length {length} of field {number} at offset {at} runs beyond the end "
                    f"of the buffer ({end - pos} bytes remain after offset {pos})",
                    at,
                )
            value = data[pos : pos + length]
            pos += length
        elif wire_type == FIXED32:
            if end - pos < 4:
                raise WireError(
                    f"truncated fixed32 field {number} at offset {pos}: "
                    f"needs 4 bytes, {end - pos} remain",
                    pos,
                )
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        elif wire_type == FIXED64:
            if end - pos < 8:
                raise WireError(
                    f"truncated fixed64 field {number} at offset {pos}: "
                    f"needs 8 bytes, {end - pos} remain",
                    pos,
                )
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire_type in (3, 4):
            raise WireError(
                f"unsupported wire type {wire_type} (group) of field {number} at offset {start}",
                start,
            )
        else:
            raise WireError(
                f"unsupported wire type {wire_type} of field {number} at offset {start}", start
            )
        append((number, wire_type, value))
    return out


def decode_fields(data: bytes | bytearray) -> list[tuple[int, int, int | bytes]]:
    """Decode one message level into `(field number, wire type, value)` in wire order.

    Varints come back as unsigned ints (at most 64 bits), fixed32 and fixed64 as unsigned
    ints, length-delimited fields as `bytes`. Raises `WireError` on malformed data.
    """
    return _fields(_buffer(data))


def decode(data: bytes | bytearray) -> dict[int, list[int | bytes]]:
    """Decode one message level into `{field number: [values in order of appearance]}`.

    Values are as in `decode_fields`. A nested message, a string or a packed repeated
    field is returned as `bytes`: pass it to `decode`, `bytes.decode` or a `packed_*`
    function. Raises `WireError` on malformed data.
    """
    out: dict[int, list[int | bytes]] = {}
    for number, _wire_type, value in _fields(_buffer(data)):
        values = out.get(number)
        if values is None:
            out[number] = [value]
        else:
            values.append(value)
    return out


def zigzag_decode(n: int) -> int:
    """Map a zigzag-encoded unsigned varint (sint32/sint64) back to a signed int."""
    _in_range(_integer(n, "n"), 0, _U64, "zigzag value")
    return (n >> 1) ^ -(n & 1)


def zigzag_encode(n: int) -> int:
    """Map a signed 64-bit int to its zigzag (sint32/sint64) unsigned form."""
    _in_range(_integer(n, "n"), _I64_MIN, -_I64_MIN, "sint value")
    return (n << 1) ^ (n >> 63)


def to_int32(n: int) -> int:
    """Reinterpret an unsigned varint as an int32: keep the low 32 bits, two's complement.

    int32 negatives are sign-extended to 10-byte varints on the wire; this undoes that.
    """
    _in_range(_integer(n, "n"), 0, _U64, "varint")
    n &= _U32 - 1
    return n - _U32 if n >> 31 else n


def to_int64(n: int) -> int:
    """Reinterpret an unsigned 64-bit value (varint or fixed64) as two's complement int64."""
    _in_range(_integer(n, "n"), 0, _U64, "varint")
    return n - _U64 if n >> 63 else n


def to_float(u32: int) -> float:
    """Reinterpret the bits of an unsigned 32-bit value (a fixed32 field) as a float."""
    _in_range(_integer(u32, "u32"), 0, _U32, "fixed32")
    result: float = struct.unpack("<f", u32.to_bytes(4, "little"))[0]
    return result


def to_double(u64: int) -> float:
    """Reinterpret the bits of an unsigned 64-bit value (a fixed64 field) as a double."""
    _in_range(_integer(u64, "u64"), 0, _U64, "fixed64")
    result: float = struct.unpack("<d", u64.to_bytes(8, "little"))[0]
    return result


def packed_varints(data: bytes | bytearray) -> list[int]:
    """Decode a packed repeated varint field's bytes into unsigned ints.

    Apply `to_int32`, `to_int64` or `bool` to each for those types.
    """
    buf = _buffer(data)
    out: list[int] = []
    pos = 0
    end = len(buf)
    while pos < end:
        value, pos = _read_varint(buf, pos)
        out.append(value)
    return out


def packed_sint(data: bytes | bytearray) -> list[int]:
    """Decode a packed repeated sint32/sint64 field's bytes (zigzag) into signed ints."""
    return [(n >> 1) ^ -(n & 1) for n in packed_varints(data)]


def _fixed(data: bytes, size: int, name: str) -> None:
    extra = len(data) % size
    if extra:
        at = len(data) - extra
        raise WireError(
            f"truncated {name} at offset {at}: packed length {len(data)} is not a multiple "
            f"of {size}",
            at,
        )


def packed_fixed32(data: bytes | bytearray) -> list[int]:
    """Decode a packed repeated fixed32 field's bytes into unsigned ints."""
    buf = _buffer(data)
    _fixed(buf, 4, "fixed32")
    return [v for (v,) in struct.iter_unpack("<I", buf)]


def packed_fixed64(data: bytes | bytearray) -> list[int]:
    """Decode a packed repeated fixed64 field's bytes into unsigned ints."""
    buf = _buffer(data)
    _fixed(buf, 8, "fixed64")
    return [v for (v,) in struct.iter_unpack("<Q", buf)]


def packed_floats(data: bytes | bytearray) -> list[float]:
    """Decode a packed repeated float (32-bit) field's bytes into floats."""
    buf = _buffer(data)
    _fixed(buf, 4, "float")
    return [v for (v,) in struct.iter_unpack("<f", buf)]


@overload
def first(fields: Mapping[int, Sequence[_T]], number: int) -> _T | None: ...
@overload
def first(fields: Mapping[int, Sequence[_T]], number: int, default: _D) -> _T | _D: ...
def first(fields: Mapping[int, Sequence[object]], number: int, default: object = None) -> object:
    """The first value of field `number` in a `decode` result, or `default` if absent."""
    values = _values(fields, number)
    return values[0] if values else default


@overload
def last(fields: Mapping[int, Sequence[_T]], number: int) -> _T | None: ...
@overload
def last(fields: Mapping[int, Sequence[_T]], number: int, default: _D) -> _T | _D: ...
def last(fields: Mapping[int, Sequence[object]], number: int, default: object = None) -> object:
    """The last value of field `number`, or `default`: protobuf's "last one wins" for scalars."""
    values = _values(fields, number)
    return values[-1] if values else default


def _values(fields: object, number: object) -> list[object] | tuple[object, ...]:
    if not isinstance(fields, Mapping):
        raise TypeError(f"fields must be a dict, not {type(fields).__name__}")
    _integer(number, "number")
    values = fields.get(number)
    if values is None:
        return ()
    return _sequence(values, f"fields[{number}]")


# --- encoding -------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    """Encode `0 <= n < 2**64` (unchecked)."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_varint(n: int) -> bytes:
    """Encode an int as a varint; a negative `n` becomes 64-bit two's complement (10 bytes).

    Accepts `-2**63 <= n < 2**64`, as protobuf int32, int64, uint32, uint64 and enum do.
    """
    _in_range(_integer(n, "n"), _I64_MIN, _U64, "varint")
    return _varint(n & (_U64 - 1))


def _varint_value(value: object, name: str) -> int:
    return _in_range(_integer(value, name), _I64_MIN, _U64, name) & (_U64 - 1)


def _sint_value(value: object, name: str) -> int:
    n = _in_range(_integer(value, name), _I64_MIN, -_I64_MIN, name)
    return (n << 1) ^ (n >> 63)


def _float_bits(value: object, name: str) -> bytes:
    x = _number(value, name)
    try:
        return struct.pack("<f", x)
    except OverflowError:
        raise ValueError(f"{name} {x!r} is too large for a 32-bit float") from None


def _packed(value: object, kind: str, limit: int) -> bytes:
    items = _sequence(value, f"{kind} value")
    if kind in ("packed_fixed32", "packed_float"):
        _guard(4 * len(items), f"{kind} payload", limit)
        out = bytearray()
        for i, item in enumerate(items):
            name = f"{kind} item {i}"
            if kind == "packed_fixed32":
                out += _in_range(_integer(item, name), 0, _U32, name).to_bytes(4, "little")
            else:
                out += _float_bits(item, name)
        return bytes(out)
    _guard(len(items), f"{kind} payload", limit)
    out = bytearray()
    for i, item in enumerate(items):
        name = f"{kind} item {i}"
        n = _varint_value(item, name) if kind == "packed_varint" else _sint_value(item, name)
        out += _varint(n)
        _guard(len(out), f"{kind} payload", limit)
    return bytes(out)


_KINDS = {
    "varint": VARINT,
    "sint": VARINT,
    "bool": VARINT,
    "fixed32": FIXED32,
    "sfixed32": FIXED32,
    "float": FIXED32,
    "fixed64": FIXED64,
    "sfixed64": FIXED64,
    "double": FIXED64,
    "bytes": LEN,
    "string": LEN,
    "message": LEN,
    "packed_varint": LEN,
    "packed_sint": LEN,
    "packed_fixed32": LEN,
    "packed_float": LEN,
}


def _payload(kind: str, value: object, limit: int) -> bytes:
    name = f"{kind} value"
    if kind == "varint":
        return _varint(_varint_value(value, name))
    if kind == "sint":
        return _varint(_sint_value(value, name))
    if kind == "bool":
        if value is True or value is False:
            return b"\x01" if value else b"\x00"
        return _varint(_in_range(_integer(value, name), 0, 2, name))
    if kind == "fixed32":
        return _in_range(_integer(value, name), 0, _U32, name).to_bytes(4, "little")
    if kind == "sfixed32":
        n = _in_range(_integer(value, name), _I32_MIN, -_I32_MIN, name)
        return n.to_bytes(4, "little", signed=True)
    if kind == "float":
        return _float_bits(value, name)
    if kind == "fixed64":
        return _in_range(_integer(value, name), 0, _U64, name).to_bytes(8, "little")
    if kind == "sfixed64":
        n = _in_range(_integer(value, name), _I64_MIN, -_I64_MIN, name)
        return n.to_bytes(8, "little", signed=True)
    if kind == "double":
        return struct.pack("<d", _number(value, name))
    if kind in ("bytes", "message"):
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"{name} must be bytes or bytearray, not {type(value).__name__}")
        _guard(len(value), f"{kind} field", limit)
        return bytes(value)
    if kind == "string":
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {type(value).__name__}")
        _guard(len(value), "string field", limit)
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"string value cannot be encoded as UTF-8: {exc.reason}") from None
        _guard(len(encoded), "string field", limit)
        return encoded
    return _packed(value, kind, limit)


def encode_field(number: int, kind: str, value: object) -> bytes:
    """Encode one field: its tag, then `value` encoded as `kind`.

    `kind` is one of "varint" (int32/int64/uint32/uint64/enum; negatives as 64-bit two's
    complement), "sint" (zigzag), "bool", "fixed32", "fixed64", "sfixed32", "sfixed64",
    "float", "double", "bytes", "string" (UTF-8), "message" (already-encoded bytes), or
    "packed_varint", "packed_sint", "packed_fixed32", "packed_float" (value is a list; an
    empty list still emits the field, with length 0). Unknown kinds and out-of-range values
    raise ValueError, wrong value types TypeError, output over `MAX_OUTPUT` ValueError.
    """
    return _encode_field(number, kind, value, MAX_OUTPUT)


def _encode_field(number: object, kind: object, value: object, limit: int) -> bytes:
    n = _in_range(_integer(number, "field number"), 1, MAX_FIELD_NUMBER + 1, "field number")
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a str, not {type(kind).__name__}")
    wire_type = _KINDS.get(kind)
    if wire_type is None:
        raise ValueError(f"unknown field kind {kind!r}; expected one of {', '.join(_KINDS)}")
    tag = _varint((n << 3) | wire_type)
    payload = _payload(kind, value, limit)
    if wire_type == LEN:
        tag += _varint(len(payload))
    _guard(len(tag) + len(payload), f"field {n}", limit)
    return tag + payload


def encode(fields: list[tuple[int, str, object]]) -> bytes:
    """Encode a message: `encode_field(number, kind, value)` for each triple, in order.

    Raises as `encode_field` does, and ValueError if the whole exceeds `MAX_OUTPUT`.
    """
    items = _sequence(fields, "fields")
    out = bytearray()
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise TypeError(f"fields[{i}] must be a (number, kind, value) tuple")
        number, kind, value = item
        out += _encode_field(number, kind, value, MAX_OUTPUT - len(out))
    return bytes(out)
