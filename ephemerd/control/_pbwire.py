"""Protocol Buffers wire format by hand, for the few messages the quick client speaks.

Decoding reads every field of a message by number (ints for varints, bytes for the
rest), and the typed readers check the wire type the schema expects; encoding writes
proto3's way (empty scalars left out). ``Malformed`` is what broken input raises.
"""

from __future__ import annotations

import struct

from ._h2 import Malformed

__all__ = [
    "Fields",
    "Value",
    "bytes_field",
    "double",
    "field",
    "fields",
    "int32",
    "last",
    "message",
    "string",
    "text",
    "uint32",
    "varint_value",
]

Value = int | bytes
Fields = dict[int, list[Value]]


def last(fields: Fields, number: int, default: Value) -> Value:
    values = fields.get(number)
    return values[-1] if values else default  # proto3: the last one wins


def fields(data: bytes) -> Fields:
    """Every field of one message by number: ints for varints, bytes for the rest."""
    found: Fields = {}
    pos, end = 0, len(data)
    while pos < end:
        tag, pos = varint(data, pos)
        wire = tag & 7
        value: Value
        if wire == 0:
            value, pos = varint(data, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos : pos + size], pos + size
        elif wire == 2:
            size, pos = varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        else:
            raise Malformed(f"unsupported wire type {wire}")
        if pos > end:
            raise Malformed("truncated message")
        found.setdefault(tag >> 3, []).append(value)
    return found


def varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 64:
        if pos >= len(data):
            raise Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise Malformed("varint too long")


def varint_value(value: Value) -> int:
    if not isinstance(value, int):
        raise Malformed("a length-delimited or fixed field where a varint belongs")
    return value


def int32(value: Value) -> int:
    return ((varint_value(value) & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000


def uint32(value: Value) -> int:
    return varint_value(value) & 0xFFFFFFFF


def double(value: Value) -> float:
    if not isinstance(value, bytes) or len(value) != 8:
        raise Malformed("a double that is not 8 bytes")
    return struct.unpack("<d", value)[0]


def text(value: Value) -> str:
    if not isinstance(value, bytes):
        raise Malformed("a varint where a string belongs")
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise Malformed("a string that is not UTF-8") from None


def key(number: int, wire: int) -> bytes:
    return encode_varint(number << 3 | wire)


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, value: bytes) -> bytes:
    """A length-delimited field, written even when empty (a map entry, a message)."""
    return key(number, 2) + encode_varint(len(value)) + value


def bytes_field(number: int, value: bytes) -> bytes:
    """A bytes field; proto3 leaves an empty one out."""
    return field(number, value) if value else b""


def string(number: int, value: str) -> bytes:
    return bytes_field(number, value.encode())


def message(value: Value) -> bytes:
    if not isinstance(value, bytes):
        raise Malformed("a varint where a message or bytes belong")
    return value
