"""protowire: the protobuf wire format without generated code."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from preservarium import protowire as pw
from preservarium.protowire import WireError

U32 = 1 << 32
U64 = 1 << 64
MAX_FIELD = (1 << 29) - 1

WIRE_TYPES = {
    "varint": 0,
    "sint": 0,
    "bool": 0,
    "fixed64": 1,
    "sfixed64": 1,
    "double": 1,
    "bytes": 2,
    "string": 2,
    "message": 2,
    "packed_varint": 2,
    "packed_sint": 2,
    "packed_fixed32": 2,
    "packed_float": 2,
    "fixed32": 5,
    "sfixed32": 5,
    "float": 5,
}


def f32(x: float) -> float:
    """`x` rounded to the nearest 32-bit float."""
    result: float = struct.unpack("<f", struct.pack("<f", x))[0]
    return result


def as_int(value: object) -> int:
    assert isinstance(value, int)
    return value


def normalize(kind: str, value: Any) -> Any:
    """What reading `value` back after encoding it as `kind` should give."""
    if kind == "varint":
        return value % U64
    if kind == "bool":
        return bool(value)
    if kind == "float":
        return f32(value)
    if kind == "double":
        return float(value)
    if kind in ("bytes", "message"):
        return bytes(value)
    if kind == "packed_varint":
        return [v % U64 for v in value]
    if kind == "packed_float":
        return [f32(v) for v in value]
    if kind in ("packed_sint", "packed_fixed32"):
        return list(value)
    return value


def read_back(kind: str, raw: int | bytes) -> Any:
    """Interpret a decoded raw value as `kind`, with the module's helpers."""
    if isinstance(raw, bytes):
        readers: dict[str, Callable[[bytes], Any]] = {
            "bytes": bytes,
            "message": bytes,
            "string": lambda b: b.decode("utf-8"),
            "packed_varint": pw.packed_varints,
            "packed_sint": pw.packed_sint,
            "packed_fixed32": pw.packed_fixed32,
            "packed_float": pw.packed_floats,
        }
        return readers[kind](raw)
    if kind == "bool":
        assert raw in (0, 1)
        return bool(raw)
    converters: dict[str, Callable[[int], Any]] = {
        "varint": int,
        "sint": pw.zigzag_decode,
        "fixed32": int,
        "fixed64": int,
        "sfixed32": pw.to_int32,
        "sfixed64": pw.to_int64,
        "float": pw.to_float,
        "double": pw.to_double,
    }
    return converters[kind](raw)


# --- known vectors ---------------------------------------------------------------------

VECTORS: list[tuple[int, str, Any, bytes]] = [
    (1, "varint", 150, b"\x08\x96\x01"),
    (1, "varint", 0, b"\x08\x00"),
    (1, "varint", -1, b"\x08" + b"\xff" * 9 + b"\x01"),
    (1, "varint", U64 - 1, b"\x08" + b"\xff" * 9 + b"\x01"),
    (2, "string", "testing", b"\x12\x07testing"),
    (2, "string", "é", b"\x12\x02\xc3\xa9"),
    (1, "sint", -1, b"\x08\x01"),
    (1, "sint", 1, b"\x08\x02"),
    (1, "sint", -2, b"\x08\x03"),
    (1, "bool", True, b"\x08\x01"),
    (1, "bool", False, b"\x08\x00"),
    (1, "float", 1.5, b"\x0d\x00\x00\xc0\x3f"),
    (1, "double", 1.0, b"\x09\x00\x00\x00\x00\x00\x00\xf0\x3f"),
    (1, "fixed32", 1, b"\x0d\x01\x00\x00\x00"),
    (1, "sfixed32", -2, b"\x0d\xfe\xff\xff\xff"),
    (1, "fixed64", 2, b"\x09\x02\x00\x00\x00\x00\x00\x00\x00"),
    (1, "sfixed64", -1, b"\x09" + b"\xff" * 8),
    (3, "bytes", b"\x00\xff", b"\x1a\x02\x00\xff"),
    (3, "message", b"\x08\x96\x01", b"\x1a\x03\x08\x96\x01"),
    (4, "packed_varint", [3, 270, 86942], b"\x22\x06\x03\x8e\x02\x9e\xa7\x05"),
    (4, "packed_sint", [0, -1, 1], b"\x22\x03\x00\x01\x02"),
    (4, "packed_fixed32", [1, U32 - 1], b"\x22\x08\x01\x00\x00\x00\xff\xff\xff\xff"),
    (4, "packed_float", [1.5], b"\x22\x04\x00\x00\xc0\x3f"),
    (4, "packed_varint", [], b"\x22\x00"),
    (15, "varint", 1, b"\x78\x01"),
    (16, "varint", 1, b"\x80\x01\x01"),
    (MAX_FIELD, "varint", 1, b"\xf8\xff\xff\xff\x0f\x01"),
]


@pytest.mark.parametrize(("number", "kind", "value", "wire"), VECTORS)
def test_known_vectors_encode(number: int, kind: str, value: Any, wire: bytes) -> None:
    assert pw.encode_field(number, kind, value) == wire
    assert pw.encode([(number, kind, value)]) == wire


@pytest.mark.parametrize(("number", "kind", "value", "wire"), VECTORS)
def test_known_vectors_decode(number: int, kind: str, value: Any, wire: bytes) -> None:
    [(got_number, wire_type, raw)] = pw.decode_fields(wire)
    assert (got_number, wire_type) == (number, WIRE_TYPES[kind])
    assert read_back(kind, raw) == normalize(kind, value)
    assert pw.decode(wire) == {number: [raw]}


def test_int32_minus_one_is_a_ten_byte_varint() -> None:
    encoded = pw.encode_varint(-1)
    assert encoded == b"\xff" * 9 + b"\x01"
    [(_, _, raw)] = pw.decode_fields(b"\x08" + encoded)
    assert raw == U64 - 1
    assert pw.to_int32(as_int(raw)) == -1
    assert pw.to_int64(as_int(raw)) == -1


def test_wire_type_constants() -> None:
    assert (pw.VARINT, pw.FIXED64, pw.LEN, pw.FIXED32) == (0, 1, 2, 5)


def test_encode_varint_vectors() -> None:
    assert pw.encode_varint(0) == b"\x00"
    assert pw.encode_varint(127) == b"\x7f"
    assert pw.encode_varint(128) == b"\x80\x01"
    assert pw.encode_varint(300) == b"\xac\x02"
    assert pw.encode_varint(U64 - 1) == b"\xff" * 9 + b"\x01"
    assert pw.encode_varint(-(1 << 63)) == b"\x80" * 9 + b"\x01"
    assert pw.packed_varints(pw.encode_varint(-(1 << 63))) == [1 << 63]


def test_decode_example_message() -> None:
    data = b"\x08\x96\x01\x12\x07testing\x1d\x00\x00\xc0\x3f\x21" + struct.pack("<d", -2.5)
    assert pw.decode(data) == {
        1: [150],
        2: [b"testing"],
        3: [0x3FC00000],
        4: [struct.unpack("<Q", struct.pack("<d", -2.5))[0]],
    }
    assert pw.decode_fields(data) == [
        (1, pw.VARINT, 150),
        (2, pw.LEN, b"testing"),
        (3, pw.FIXED32, 0x3FC00000),
        (4, pw.FIXED64, struct.unpack("<Q", struct.pack("<d", -2.5))[0]),
    ]
    fields = pw.decode(data)
    assert pw.to_float(as_int(pw.first(fields, 3, 0))) == 1.5
    assert pw.to_double(as_int(pw.first(fields, 4, 0))) == -2.5


def test_empty_message() -> None:
    assert pw.decode(b"") == {}
    assert pw.decode_fields(b"") == []
    assert pw.encode([]) == b""


def test_bytearray_input_gives_bytes_values() -> None:
    fields = pw.decode(bytearray(b"\x12\x07testing"))
    assert fields == {2: [b"testing"]}
    assert type(fields[2][0]) is bytes
    assert pw.packed_varints(bytearray(b"\x01\x02")) == [1, 2]
    assert pw.encode_field(1, "bytes", bytearray(b"ab")) == b"\x0a\x02ab"


# --- round trips -----------------------------------------------------------------------

ROUND_TRIPS: list[tuple[str, Any]] = [
    ("varint", 0),
    ("varint", 1),
    ("varint", 150),
    ("varint", (1 << 31) - 1),
    ("varint", -(1 << 31)),
    ("varint", (1 << 63) - 1),
    ("varint", -(1 << 63)),
    ("varint", U64 - 1),
    ("sint", 0),
    ("sint", -1),
    ("sint", (1 << 63) - 1),
    ("sint", -(1 << 63)),
    ("bool", True),
    ("bool", False),
    ("bool", 1),
    ("fixed32", 0),
    ("fixed32", U32 - 1),
    ("fixed64", 0),
    ("fixed64", U64 - 1),
    ("sfixed32", -(1 << 31)),
    ("sfixed32", (1 << 31) - 1),
    ("sfixed64", -(1 << 63)),
    ("sfixed64", (1 << 63) - 1),
    ("float", 0.0),
    ("float", -0.25),
    ("float", 3.4028234663852886e38),
    ("float", math.inf),
    ("float", 0.1),
    ("float", 7),
    ("double", 0.1),
    ("double", -math.inf),
    ("double", 5e-324),
    ("double", 3),
    ("bytes", b""),
    ("bytes", bytes(range(256))),
    ("string", ""),
    ("string", "héllo wörld ✓ 🦀"),
    ("message", b"\x08\x01"),
    ("packed_varint", [0, 1, -1, U64 - 1, 300]),
    ("packed_sint", [0, -1, 1, -(1 << 63), (1 << 63) - 1]),
    ("packed_fixed32", [0, 1, U32 - 1]),
    ("packed_float", [0.0, 1.5, -0.1, math.inf]),
    ("packed_float", ()),
]


@pytest.mark.parametrize(("kind", "value"), ROUND_TRIPS)
def test_round_trip_every_kind(kind: str, value: Any) -> None:
    wire = pw.encode_field(7, kind, value)
    [(number, wire_type, raw)] = pw.decode_fields(wire)
    assert number == 7
    assert wire_type == WIRE_TYPES[kind]
    assert read_back(kind, raw) == normalize(kind, value)


def test_round_trip_covers_every_kind() -> None:
    assert {kind for kind, _ in ROUND_TRIPS} == set(WIRE_TYPES)


def test_nan_round_trips() -> None:
    [(_, _, raw)] = pw.decode_fields(pw.encode_field(1, "float", math.nan))
    assert math.isnan(pw.to_float(as_int(raw)))
    [(_, _, raw)] = pw.decode_fields(pw.encode_field(1, "double", math.nan))
    assert math.isnan(pw.to_double(as_int(raw)))
    assert math.isnan(pw.packed_floats(pw.encode_field(1, "packed_float", [math.nan])[2:])[0])


def test_encode_keeps_order_and_repeats() -> None:
    wire = pw.encode([(2, "varint", 1), (1, "string", "a"), (2, "varint", 2), (2, "sint", -3)])
    assert pw.decode_fields(wire) == [
        (2, 0, 1),
        (1, 2, b"a"),
        (2, 0, 2),
        (2, 0, 5),
    ]
    assert pw.decode(wire) == {2: [1, 2, 5], 1: [b"a"]}
    assert wire == b"".join(
        [
            pw.encode_field(2, "varint", 1),
            pw.encode_field(1, "string", "a"),
            pw.encode_field(2, "varint", 2),
            pw.encode_field(2, "sint", -3),
        ]
    )


# --- scalar helpers --------------------------------------------------------------------

ZIGZAG = [
    (0, 0),
    (-1, 1),
    (1, 2),
    (-2, 3),
    (2, 4),
    ((1 << 31) - 1, U32 - 2),
    (-(1 << 31), U32 - 1),
    ((1 << 63) - 1, U64 - 2),
    (-(1 << 63), U64 - 1),
]


@pytest.mark.parametrize(("signed", "unsigned"), ZIGZAG)
def test_zigzag(signed: int, unsigned: int) -> None:
    assert pw.zigzag_encode(signed) == unsigned
    assert pw.zigzag_decode(unsigned) == signed


def test_zigzag_ranges() -> None:
    with pytest.raises(ValueError, match="out of range"):
        pw.zigzag_encode(1 << 63)
    with pytest.raises(ValueError, match="out of range"):
        pw.zigzag_encode(-(1 << 63) - 1)
    with pytest.raises(ValueError, match="out of range"):
        pw.zigzag_decode(-1)
    with pytest.raises(ValueError, match="out of range"):
        pw.zigzag_decode(U64)
    with pytest.raises(TypeError, match="int"):
        pw.zigzag_decode(1.0)  # type: ignore[arg-type]


def test_to_int32_and_to_int64() -> None:
    assert pw.to_int32(0) == 0
    assert pw.to_int32((1 << 31) - 1) == (1 << 31) - 1
    assert pw.to_int32(1 << 31) == -(1 << 31)
    assert pw.to_int32(U32 - 1) == -1
    assert pw.to_int32(U64 - 1) == -1
    assert pw.to_int32(U64 - (1 << 31)) == -(1 << 31)
    assert pw.to_int64(U64 - 1) == -1
    assert pw.to_int64(1 << 63) == -(1 << 63)
    assert pw.to_int64((1 << 63) - 1) == (1 << 63) - 1
    assert pw.to_int64(U32 - 1) == U32 - 1
    for bad in (-1, U64):
        with pytest.raises(ValueError, match="out of range"):
            pw.to_int32(bad)
        with pytest.raises(ValueError, match="out of range"):
            pw.to_int64(bad)
    with pytest.raises(TypeError):
        pw.to_int64("1")  # type: ignore[arg-type]


def test_to_float_and_to_double() -> None:
    assert pw.to_float(0x3FC00000) == 1.5
    assert pw.to_float(0x80000000) == 0.0
    assert math.copysign(1.0, pw.to_float(0x80000000)) == -1.0
    assert pw.to_float(0x7F800000) == math.inf
    assert math.isnan(pw.to_float(0x7FC00000))
    assert pw.to_double(0x3FF0000000000000) == 1.0
    assert pw.to_double(0xFFF0000000000000) == -math.inf
    with pytest.raises(ValueError, match="out of range"):
        pw.to_float(U32)
    with pytest.raises(ValueError, match="out of range"):
        pw.to_double(-1)
    with pytest.raises(TypeError):
        pw.to_float(1.5)  # type: ignore[arg-type]


# --- packed repeated fields ------------------------------------------------------------


def test_packed_decoders() -> None:
    assert pw.packed_varints(b"\x03\x8e\x02\x9e\xa7\x05") == [3, 270, 86942]
    assert pw.packed_varints(b"") == []
    assert pw.packed_sint(b"\x00\x01\x02\x03\x04") == [0, -1, 1, -2, 2]
    assert pw.packed_fixed32(struct.pack("<3I", 1, 2, U32 - 1)) == [1, 2, U32 - 1]
    assert pw.packed_fixed64(struct.pack("<2Q", 1, U64 - 1)) == [1, U64 - 1]
    assert pw.packed_floats(struct.pack("<2f", 1.5, -2.0)) == [1.5, -2.0]
    for decoder in (pw.packed_fixed32, pw.packed_fixed64, pw.packed_floats, pw.packed_sint):
        assert decoder(b"") == []


def test_packed_field_inside_a_message() -> None:
    wire = pw.encode(
        [
            (1, "packed_sint", [-5, 0, 5]),
            (2, "packed_float", [0.5, 2.0]),
            (3, "packed_fixed32", [7]),
            (4, "packed_varint", [1, 2]),
        ]
    )
    fields = pw.decode(wire)
    assert pw.packed_sint(pw.first(fields, 1, b"")) == [-5, 0, 5]  # type: ignore[arg-type]
    assert pw.packed_floats(pw.first(fields, 2, b"")) == [0.5, 2.0]  # type: ignore[arg-type]
    assert pw.packed_fixed32(pw.first(fields, 3, b"")) == [7]  # type: ignore[arg-type]
    assert pw.packed_varints(pw.first(fields, 4, b"")) == [1, 2]  # type: ignore[arg-type]


def test_unpacked_repeated_field_is_a_list() -> None:
    wire = b"".join(pw.encode_field(4, "varint", v) for v in (3, 270, 86942))
    assert pw.decode(wire) == {4: [3, 270, 86942]}


@pytest.mark.parametrize(
    ("decoder", "data", "match"),
    [
        (pw.packed_fixed32, b"\x00" * 7, r"truncated fixed32 at offset 4"),
        (pw.packed_fixed64, b"\x00" * 9, r"truncated fixed64 at offset 8"),
        (pw.packed_floats, b"\x00" * 2, r"truncated float at offset 0"),
        (pw.packed_varints, b"\x01\x80", r"truncated varint at offset 1"),
        (pw.packed_sint, b"\x01\x02\xff", r"truncated varint at offset 2"),
        (pw.packed_varints, b"\x01" + b"\xff" * 10 + b"\x01", r"at offset 1 is longer than 10"),
        (pw.packed_varints, b"\xff" * 9 + b"\x7f", r"at offset 0 is wider than 64 bits"),
    ],
)
def test_packed_errors(decoder: Callable[[bytes], object], data: bytes, match: str) -> None:
    with pytest.raises(WireError, match=match):
        decoder(data)


# --- nested messages, repeated fields, first/last --------------------------------------


def test_nested_message_decoded_by_calling_decode_again() -> None:
    inner = pw.encode([(1, "string", "sensor-7"), (2, "sint", -40)])
    outer = pw.encode([(1, "varint", 9), (2, "message", inner), (2, "message", b"")])
    fields = pw.decode(outer)
    assert fields[1] == [9]
    assert fields[2] == [inner, b""]
    nested = pw.decode(fields[2][0])  # type: ignore[arg-type]
    assert nested == {1: [b"sensor-7"], 2: [79]}
    assert pw.zigzag_decode(pw.first(nested, 2, 0)) == -40  # type: ignore[arg-type]
    assert pw.decode(fields[2][1]) == {}  # type: ignore[arg-type]


def test_deep_nesting_needs_no_recursion() -> None:
    wire = pw.encode_field(1, "varint", 42)
    for _ in range(2000):
        wire = pw.encode_field(2, "message", wire)
    depth = 0
    fields = pw.decode(wire)
    while 2 in fields:
        depth += 1
        fields = pw.decode(pw.first(fields, 2, b""))  # type: ignore[arg-type]
    assert depth == 2000
    assert fields == {1: [42]}


def test_multiple_occurrences_first_and_last() -> None:
    wire = pw.encode([(1, "varint", 1), (2, "string", "x"), (1, "varint", 2), (1, "varint", 3)])
    fields = pw.decode(wire)
    assert fields[1] == [1, 2, 3]
    assert pw.first(fields, 1) == 1
    assert pw.last(fields, 1) == 3
    assert pw.first(fields, 2) == b"x"
    assert pw.last(fields, 2) == b"x"
    assert pw.first(fields, 9) is None
    assert pw.last(fields, 9) is None
    assert pw.first(fields, 9, 0) == 0
    assert pw.last(fields, 9, b"") == b""
    assert pw.first({5: []}, 5, "d") == "d"
    assert pw.last({5: []}, 5, "d") == "d"


def test_first_and_last_reject_wrong_types() -> None:
    with pytest.raises(TypeError, match="fields must be a dict"):
        pw.first([1, 2], 0)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="number must be an int"):
        pw.last({1: [1]}, "1")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"fields\[1\] must be a list"):
        pw.first({1: 5}, 1)  # type: ignore[arg-type]


# --- malformed input -------------------------------------------------------------------

WIRE_ERRORS: list[tuple[bytes, str, int]] = [
    (b"\x80", r"truncated varint at offset 0", 0),
    (b"\x08", r"truncated varint at offset 1", 1),
    (b"\x08\x96", r"truncated varint at offset 1", 1),
    (b"\x08\x01\x10\xff\xff", r"truncated varint at offset 3", 3),
    (b"\x08" + b"\xff" * 10 + b"\x01", r"varint at offset 1 is longer than 10 bytes", 1),
    (b"\x08" + b"\x80" * 11, r"varint at offset 1 is longer than 10 bytes", 1),
    (b"\x08" + b"\xff" * 9 + b"\x02", r"varint at offset 1 is wider than 64 bits", 1),
    (b"\xff" * 9 + b"\x7f", r"varint at offset 0 is wider than 64 bits", 0),
    (b"\x00", r"invalid field number 0 at offset 0", 0),
    (b"\x08\x01\x02\x00", r"invalid field number 0 at offset 2", 2),
    (b"\x08\x01\x80\x80\x80\x80\x10\x00", r"invalid field number 536870912 at offset 2", 2),
    (b"\xf8\xff\xff\xff\xff\x01\x00", r"invalid field number 8589934591 at offset 0", 0),
    (b"\x12\x05abc", r"length 5 of field 2 at offset 1 runs beyond the end", 1),
    (b"\x08\x01\x12\x01", r"length 1 of field 2 at offset 3 runs beyond the end", 3),
    (b"\x12" + b"\xff" * 9 + b"\x01", r"length 18446744073709551615 .* at offset 1", 1),
    (b"\x12\x80", r"truncated varint at offset 1", 1),
    (b"\x0d\x01\x02\x03", r"truncated fixed32 field 1 at offset 1", 1),
    (b"\x08\x00\x0d", r"truncated fixed32 field 1 at offset 3", 3),
    (b"\x09\x01\x02\x03\x04\x05\x06\x07", r"truncated fixed64 field 1 at offset 1", 1),
    (b"\x0b", r"unsupported wire type 3 \(group\) of field 1 at offset 0", 0),
    (b"\x08\x01\x0c", r"unsupported wire type 4 \(group\) of field 1 at offset 2", 2),
    (b"\x0e", r"unsupported wire type 6 of field 1 at offset 0", 0),
    (b"\x08\x01\x17", r"unsupported wire type 7 of field 2 at offset 2", 2),
]


@pytest.mark.parametrize(("data", "match", "offset"), WIRE_ERRORS)
def test_wire_errors(data: bytes, match: str, offset: int) -> None:
    for decoder in (pw.decode, pw.decode_fields):
        with pytest.raises(WireError, match=match) as caught:
            decoder(data)
        assert caught.value.offset == offset
        assert f"offset {offset}" in str(caught.value)
    with pytest.raises(WireError):
        pw.decode(bytearray(data))


def test_wire_error_is_a_value_error() -> None:
    assert issubclass(WireError, ValueError)
    with pytest.raises(ValueError, match="offset 0"):
        pw.decode(b"\x80")


def test_error_inside_a_nested_message_is_reported_by_the_inner_decode() -> None:
    outer = pw.encode_field(1, "message", b"\x08")
    fields = pw.decode(outer)
    with pytest.raises(WireError, match="truncated varint at offset 1"):
        pw.decode(fields[1][0])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "function",
    [
        pw.decode,
        pw.decode_fields,
        pw.packed_varints,
        pw.packed_sint,
        pw.packed_fixed32,
        pw.packed_fixed64,
        pw.packed_floats,
    ],
)
@pytest.mark.parametrize("bad", ["\x08\x01", None, [8, 1], 8, memoryview(b"\x08\x01")])
def test_type_error_on_non_bytes_input(function: Callable[[Any], object], bad: object) -> None:
    with pytest.raises(TypeError, match="data must be bytes or bytearray, not"):
        function(bad)


def test_type_error_names_the_type() -> None:
    with pytest.raises(TypeError, match="not str"):
        pw.decode("abc")  # type: ignore[arg-type]


# --- encoding errors -------------------------------------------------------------------


def test_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="unknown field kind 'int32'"):
        pw.encode_field(1, "int32", 1)
    with pytest.raises(ValueError, match="unknown field kind 'packed_double'"):
        pw.encode([(1, "packed_double", [1.0])])
    with pytest.raises(TypeError, match="kind must be a str"):
        pw.encode_field(1, 0, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("varint", U64),
        ("varint", -(1 << 63) - 1),
        ("sint", 1 << 63),
        ("sint", -(1 << 63) - 1),
        ("bool", 2),
        ("bool", -1),
        ("fixed32", -1),
        ("fixed32", U32),
        ("fixed64", -1),
        ("fixed64", U64),
        ("sfixed32", 1 << 31),
        ("sfixed32", -(1 << 31) - 1),
        ("sfixed64", 1 << 63),
        ("sfixed64", -(1 << 63) - 1),
        ("float", 1e39),
        ("float", -1e39),
        ("float", 1 << 200),
        ("double", 1 << 2000),
        ("string", "\ud800"),
        ("packed_varint", [1, U64]),
        ("packed_sint", [1 << 63]),
        ("packed_fixed32", [0, -1]),
        ("packed_float", [1e39]),
    ],
)
def test_out_of_range_values(kind: str, value: Any) -> None:
    with pytest.raises(ValueError):
        pw.encode_field(1, kind, value)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("varint", "1"),
        ("varint", 1.0),
        ("sint", None),
        ("bool", "yes"),
        ("fixed32", 1.5),
        ("float", "1.5"),
        ("double", None),
        ("bytes", "text"),
        ("message", [1]),
        ("string", b"bytes"),
        ("packed_varint", b"\x01"),
        ("packed_varint", 5),
        ("packed_sint", ["1"]),
        ("packed_fixed32", [1.0]),
        ("packed_float", "1.5"),
    ],
)
def test_wrong_value_types(kind: str, value: Any) -> None:
    with pytest.raises(TypeError, match="must be"):
        pw.encode_field(1, kind, value)


@pytest.mark.parametrize("number", [0, -1, MAX_FIELD + 1, 1 << 40])
def test_field_number_range(number: int) -> None:
    with pytest.raises(ValueError, match="field number"):
        pw.encode_field(number, "varint", 1)


def test_field_number_type() -> None:
    with pytest.raises(TypeError, match="field number must be an int"):
        pw.encode_field("1", "varint", 1)  # type: ignore[arg-type]


def test_encode_varint_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        pw.encode_varint(U64)
    with pytest.raises(ValueError, match="out of range"):
        pw.encode_varint(-(1 << 63) - 1)
    with pytest.raises(TypeError, match="must be an int"):
        pw.encode_varint(1.0)  # type: ignore[arg-type]


def test_encode_rejects_malformed_field_lists() -> None:
    with pytest.raises(TypeError, match="fields must be a list"):
        pw.encode("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"fields\[1\] must be a \(number, kind, value\)"):
        pw.encode([(1, "varint", 1), (2, "varint")])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"fields\[0\]"):
        pw.encode([5])  # type: ignore[list-item]


# --- size guards -----------------------------------------------------------------------


def test_size_limit_is_one_mebibyte() -> None:
    assert pw.MAX_OUTPUT == 1 << 20


def test_bytes_field_up_to_the_limit() -> None:
    # Tag (1 byte) and length (3 bytes) plus the payload must fit in MAX_OUTPUT.
    ok = pw.encode_field(1, "bytes", b"x" * (pw.MAX_OUTPUT - 4))
    assert len(ok) == pw.MAX_OUTPUT
    assert pw.decode(ok) == {1: [b"x" * (pw.MAX_OUTPUT - 4)]}
    with pytest.raises(ValueError, match="output limit"):
        pw.encode_field(1, "bytes", b"x" * (pw.MAX_OUTPUT - 3))
    with pytest.raises(ValueError, match="output limit"):
        pw.encode_field(1, "message", b"x" * (pw.MAX_OUTPUT + 1))


def test_string_limit_counts_utf8_bytes() -> None:
    with pytest.raises(ValueError, match="output limit"):
        pw.encode_field(1, "string", "x" * (pw.MAX_OUTPUT + 1))
    with pytest.raises(ValueError, match="output limit"):
        pw.encode_field(1, "string", "é" * (pw.MAX_OUTPUT // 2 + 1))


@pytest.mark.parametrize(
    ("kind", "item", "count"),
    [
        ("packed_varint", -1, pw.MAX_OUTPUT // 10 + 1),
        ("packed_varint", 1, pw.MAX_OUTPUT + 1),
        ("packed_sint", -(1 << 63), pw.MAX_OUTPUT // 10 + 1),
        ("packed_fixed32", 1, pw.MAX_OUTPUT // 4 + 1),
        ("packed_float", 1.0, pw.MAX_OUTPUT // 4 + 1),
    ],
)
def test_packed_limit(kind: str, item: Any, count: int) -> None:
    with pytest.raises(ValueError, match="output limit"):
        pw.encode_field(1, kind, [item] * count)


def test_encode_limit_is_cumulative() -> None:
    half = b"x" * (pw.MAX_OUTPUT // 2)
    with pytest.raises(ValueError, match="output limit"):
        pw.encode([(1, "bytes", half), (2, "bytes", half)])
    with pytest.raises(ValueError, match="output limit"):
        pw.encode([(1, "varint", 1)] * (pw.MAX_OUTPUT // 2 + 1))
    fits = pw.encode([(1, "bytes", half[:-8]), (2, "bytes", half[:-8])])
    assert len(fits) <= pw.MAX_OUTPUT


# --- property-style round trips --------------------------------------------------------

EDGE_INTS = [0, 1, 127, 128, 16383, 16384, (1 << 31) - 1, 1 << 31, (1 << 63) - 1]


def random_value(rng: random.Random, kind: str) -> Any:
    def pick(low: int, high: int) -> int:
        """An int in [low, high], often an edge."""
        if rng.random() < 0.3:
            edges = [e for e in EDGE_INTS + [-e for e in EDGE_INTS] if low <= e <= high]
            return rng.choice([*edges, low, high])
        return rng.randint(low, high) >> rng.randrange(64)

    def float_bits(width: int) -> float:
        fmt_int, fmt_float = ("<I", "<f") if width == 32 else ("<Q", "<d")
        while True:
            bits = rng.getrandbits(width)
            value: float = struct.unpack(fmt_float, struct.pack(fmt_int, bits))[0]
            if not math.isnan(value):
                return value

    if kind == "varint":
        return pick(-(1 << 63), U64 - 1)
    if kind in ("sint", "sfixed64"):
        return pick(-(1 << 63), (1 << 63) - 1)
    if kind == "sfixed32":
        return pick(-(1 << 31), (1 << 31) - 1)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "fixed32":
        return pick(0, U32 - 1)
    if kind == "fixed64":
        return pick(0, U64 - 1)
    if kind == "float":
        return float_bits(32)
    if kind == "double":
        return float_bits(64) if rng.random() < 0.7 else rng.uniform(-1e6, 1e6)
    if kind in ("bytes", "message"):
        return rng.randbytes(rng.choice([0, 1, 5, 127, 128, 300]))
    if kind == "string":
        alphabet = "az09 é✓🦀\x00\n"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
    count = rng.randrange(8)
    element = {
        "packed_varint": "varint",
        "packed_sint": "sint",
        "packed_fixed32": "fixed32",
        "packed_float": "float",
    }[kind]
    return [random_value(rng, element) for _ in range(count)]


def random_number(rng: random.Random) -> int:
    return rng.choice([1, 2, 15, 16, 2047, 2048, MAX_FIELD, rng.randint(1, MAX_FIELD)])


@pytest.mark.parametrize("seed", range(4))
def test_random_round_trips(seed: int) -> None:
    rng = random.Random(seed)
    kinds = sorted(WIRE_TYPES)
    for _ in range(100):
        fields = [
            (random_number(rng), kind, random_value(rng, kind))
            for kind in (rng.choice(kinds) for _ in range(rng.randrange(12)))
        ]
        wire = pw.encode(fields)
        decoded = pw.decode_fields(wire)
        assert len(decoded) == len(fields)
        for (number, kind, value), (got_number, wire_type, raw) in zip(
            fields, decoded, strict=True
        ):
            assert got_number == number
            assert wire_type == WIRE_TYPES[kind]
            assert read_back(kind, raw) == normalize(kind, value), (kind, value)
        grouped: dict[int, list[int | bytes]] = {}
        for number, _, raw in decoded:
            grouped.setdefault(number, []).append(raw)
        assert pw.decode(wire) == grouped
        assert pw.encode([(n, k, v) for n, k, v in fields]) == wire


@pytest.mark.parametrize("seed", range(2))
def test_random_garbage_raises_only_wire_error(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        data = rng.randbytes(rng.randrange(40))
        try:
            fields = pw.decode_fields(data)
        except WireError as error:
            assert "offset" in str(error)
            assert error.offset is not None
            assert 0 <= error.offset <= len(data)
        else:
            for _, wire_type, value in fields:
                assert wire_type in (0, 1, 2, 5)
                assert isinstance(value, bytes) == (wire_type == 2)


# --- agreement with the protobuf runtime -----------------------------------------------


def sample_message_class() -> Any:
    """A proto3 message type with one field of every scalar type, built at run time."""
    file = descriptor_pb2.FileDescriptorProto(
        name="protowire_test.proto", package="protowire_test", syntax="proto3"
    )
    message = file.message_type.add(name="Sample")
    types = descriptor_pb2.FieldDescriptorProto
    layout = [
        ("i32", types.TYPE_INT32),
        ("i64", types.TYPE_INT64),
        ("u32", types.TYPE_UINT32),
        ("u64", types.TYPE_UINT64),
        ("s32", types.TYPE_SINT32),
        ("s64", types.TYPE_SINT64),
        ("flag", types.TYPE_BOOL),
        ("f32", types.TYPE_FIXED32),
        ("f64", types.TYPE_FIXED64),
        ("sf32", types.TYPE_SFIXED32),
        ("sf64", types.TYPE_SFIXED64),
        ("real", types.TYPE_FLOAT),
        ("dbl", types.TYPE_DOUBLE),
        ("text", types.TYPE_STRING),
        ("blob", types.TYPE_BYTES),
    ]
    for number, (name, kind) in enumerate(layout, start=1):
        message.field.add(name=name, number=number, type=kind, label=types.LABEL_OPTIONAL)
    message.field.add(
        name="child",
        number=16,
        type=types.TYPE_MESSAGE,
        type_name=".protowire_test.Sample",
        label=types.LABEL_OPTIONAL,
    )
    for number, (name, kind) in enumerate(
        [
            ("ints", types.TYPE_INT32),
            ("sints", types.TYPE_SINT64),
            ("fixeds", types.TYPE_FIXED32),
            ("reals", types.TYPE_FLOAT),
        ],
        start=17,
    ):
        message.field.add(name=name, number=number, type=kind, label=types.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("protowire_test.Sample"))


SAMPLE_FIELDS: list[tuple[int, str, Any]] = [
    (1, "varint", -7),
    (2, "varint", -(1 << 40)),
    (3, "varint", U32 - 1),
    (4, "varint", U64 - 1),
    (5, "sint", -(1 << 31)),
    (6, "sint", -(1 << 63)),
    (7, "bool", True),
    (8, "fixed32", 0xDEADBEEF),
    (9, "fixed64", U64 - 2),
    (10, "sfixed32", -12345),
    (11, "sfixed64", -(1 << 50)),
    (12, "float", 1.5),
    (13, "double", -0.1),
    (14, "string", "héllo ✓"),
    (15, "bytes", b"\x00\x01\xff"),
    (16, "message", b"\x08\x05\x72\x02hi"),
    (17, "packed_varint", [1, -1, 300]),
    (18, "packed_sint", [-1, 0, 1 << 40]),
    (19, "packed_fixed32", [0, U32 - 1]),
    (20, "packed_float", [0.5, -2.0]),
]


def test_protobuf_parses_what_protowire_encodes() -> None:
    sample = sample_message_class()()
    sample.ParseFromString(pw.encode(SAMPLE_FIELDS))
    assert (sample.i32, sample.i64, sample.u32, sample.u64) == (-7, -(1 << 40), U32 - 1, U64 - 1)
    assert (sample.s32, sample.s64, sample.flag) == (-(1 << 31), -(1 << 63), True)
    assert (sample.f32, sample.f64, sample.sf32, sample.sf64) == (
        0xDEADBEEF,
        U64 - 2,
        -12345,
        -(1 << 50),
    )
    assert (sample.real, sample.dbl) == (1.5, -0.1)
    assert (sample.text, sample.blob) == ("héllo ✓", b"\x00\x01\xff")
    assert (sample.child.i32, sample.child.text) == (5, "hi")
    assert list(sample.ints) == [1, -1, 300]
    assert list(sample.sints) == [-1, 0, 1 << 40]
    assert list(sample.fixeds) == [0, U32 - 1]
    assert list(sample.reals) == [0.5, -2.0]


def test_protowire_decodes_what_protobuf_encodes() -> None:
    cls = sample_message_class()
    sample = cls(
        i32=-7,
        i64=-(1 << 40),
        u32=U32 - 1,
        u64=U64 - 1,
        s32=-(1 << 31),
        s64=-(1 << 63),
        flag=True,
        f32=0xDEADBEEF,
        f64=U64 - 2,
        sf32=-12345,
        sf64=-(1 << 50),
        real=1.5,
        dbl=-0.1,
        text="héllo ✓",
        blob=b"\x00\x01\xff",
        child=cls(i32=5, text="hi"),
        ints=[1, -1, 300],
        sints=[-1, 0, 1 << 40],
        fixeds=[0, U32 - 1],
        reals=[0.5, -2.0],
    )
    wire = sample.SerializeToString(deterministic=True)
    assert wire == pw.encode(SAMPLE_FIELDS)
    fields = pw.decode(wire)

    def one(number: int) -> Any:
        [value] = fields[number]
        return value

    assert pw.to_int32(one(1)) == -7
    assert pw.to_int64(one(2)) == -(1 << 40)
    assert (one(3), one(4)) == (U32 - 1, U64 - 1)
    assert pw.zigzag_decode(one(5)) == -(1 << 31)
    assert pw.zigzag_decode(one(6)) == -(1 << 63)
    assert one(7) == 1
    assert (one(8), one(9)) == (0xDEADBEEF, U64 - 2)
    assert pw.to_int32(one(10)) == -12345
    assert pw.to_int64(one(11)) == -(1 << 50)
    assert pw.to_float(one(12)) == 1.5
    assert pw.to_double(one(13)) == -0.1
    assert one(14).decode() == "héllo ✓"
    assert one(15) == b"\x00\x01\xff"
    assert pw.decode(one(16)) == {1: [5], 14: [b"hi"]}
    assert [pw.to_int32(v) for v in pw.packed_varints(one(17))] == [1, -1, 300]
    assert pw.packed_sint(one(18)) == [-1, 0, 1 << 40]
    assert pw.packed_fixed32(one(19)) == [0, U32 - 1]
    assert pw.packed_floats(one(20)) == [0.5, -2.0]
