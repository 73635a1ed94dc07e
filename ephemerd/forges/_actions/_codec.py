"""The two Connect codecs of the runner protocol: proto3 JSON and binary ``application/proto``.

betterproto's own ``to_dict`` is not proto3 JSON as the Go servers speak it: it strips
enum prefixes (``CANCELLED`` for ``RESULT_CANCELLED``) and cannot carry
``google.protobuf.Struct``. So JSON is walked here from betterproto's field metadata:
lowerCamelCase names (snake_case accepted), int64 as strings (numbers accepted), enums by
full name (integers accepted), bytes as padded base64 (URL-safe and unpadded accepted),
Timestamps as RFC 3339, defaults omitted, ``JsonStruct`` as a plain JSON object. Unknown
keys are skipped, as newer connect-go servers do.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
import math
import re
from typing import Protocol, TypeVar, cast

import betterproto

from ephemerd._proto.runner.v1 import JsonList, JsonStruct, JsonValue

__all__ = [
    "JSON_TYPE",
    "PROTO_TYPE",
    "CodecError",
    "decode_message",
    "encode_message",
    "from_json_value",
    "plain_from_struct",
    "struct_from_plain",
    "to_json_value",
]

JSON_TYPE = "application/json"
PROTO_TYPE = "application/proto"

_M = TypeVar("_M", bound=betterproto.Message)
_INT64 = frozenset(
    {
        betterproto.TYPE_INT64,
        betterproto.TYPE_UINT64,
        betterproto.TYPE_SINT64,
        betterproto.TYPE_FIXED64,
        betterproto.TYPE_SFIXED64,
    }
)
_MEMBERS = "_member_map_"  # betterproto enums keep their members where enum.Enum does
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class CodecError(ValueError):
    """A body does not decode as the message it should be; the message says where."""


class _Field(Protocol):
    proto_type: str
    map_types: tuple[str, str] | None
    optional: bool
    group: str | None


class _Meta(Protocol):
    meta_by_field_name: dict[str, _Field]
    cls_by_field: dict[str, type]


def _meta(cls: type[betterproto.Message]) -> _Meta:
    return cast(_Meta, cls._betterproto)  # pyright: ignore[reportPrivateUsage]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _enum_prefix(cls: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).upper() + "_"


# --- JsonStruct <-> plain JSON -------------------------------------------------------------


def to_json_value(value: object) -> JsonValue:
    """The ``google.protobuf.Value`` form of a plain JSON value."""
    if value is None:
        return JsonValue(null_value=0)
    if isinstance(value, bool):
        return JsonValue(bool_value=value)
    if isinstance(value, int | float):
        return JsonValue(number_value=float(value))
    if isinstance(value, str):
        return JsonValue(string_value=value)
    if isinstance(value, dict):
        return JsonValue(struct_value=struct_from_plain(cast(dict[str, object], value)))
    if isinstance(value, list | tuple):
        items = cast(list[object], value)
        return JsonValue(list_value=JsonList(values=[to_json_value(v) for v in items]))
    raise CodecError(f"cannot put a {type(value).__name__} into a protobuf Struct")


def from_json_value(value: JsonValue) -> object:
    """The plain JSON value of a ``google.protobuf.Value``."""
    which, inner = betterproto.which_one_of(value, "kind")
    if which == "struct_value":
        return plain_from_struct(cast(JsonStruct, inner))
    if which == "list_value":
        return [from_json_value(v) for v in cast(JsonList, inner).values]
    if which == "number_value":
        number = cast(float, inner)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if which in ("string_value", "bool_value"):
        return inner
    return None


def struct_from_plain(plain: dict[str, object]) -> JsonStruct:
    return JsonStruct(fields={str(k): to_json_value(v) for k, v in plain.items()})


def plain_from_struct(struct: JsonStruct) -> dict[str, object]:
    return {k: from_json_value(v) for k, v in struct.fields.items()}


# --- encoding --------------------------------------------------------------------------------


def _scalar_out(proto_type: str, cls: type | None, value: object) -> object:
    if proto_type in _INT64:
        return str(value)
    if proto_type == betterproto.TYPE_ENUM and cls is not None:
        member = cast(enum.Enum, cls(value))
        return _enum_prefix(cls) + member.name
    if proto_type == betterproto.TYPE_BYTES:
        return base64.b64encode(cast(bytes, value)).decode()
    if proto_type in (betterproto.TYPE_FLOAT, betterproto.TYPE_DOUBLE):
        number = cast(float, value)
        finite = not math.isnan(number) and not math.isinf(number)
        return number if finite else str(number)
    return value


def _message_out(value: object) -> object:
    if isinstance(value, dt.datetime):
        stamp = value.astimezone(dt.UTC).isoformat(timespec="microseconds")
        return stamp.replace("+00:00", "Z").replace(".000000Z", "Z")
    if isinstance(value, JsonStruct):
        return plain_from_struct(value)
    return _to_plain(cast(betterproto.Message, value))


def _is_default(field: _Field, value: object) -> bool:
    if field.optional or field.group is not None:
        return value is None
    if isinstance(value, list | dict):
        return not value
    if field.proto_type == betterproto.TYPE_MESSAGE:
        if isinstance(value, dt.datetime):
            return value == _EPOCH
        message = cast(betterproto.Message, value)
        return not betterproto.serialized_on_wire(message) and not _to_plain(message)
    return not value


def _to_plain(message: betterproto.Message) -> dict[str, object]:
    meta = _meta(type(message))
    out: dict[str, object] = {}
    groups: dict[str, str] = {}
    for group_name in {f.group for f in meta.meta_by_field_name.values() if f.group}:
        groups[group_name] = betterproto.which_one_of(message, group_name)[0]
    for name, field in meta.meta_by_field_name.items():
        value = getattr(message, name)
        if field.group is not None:
            if groups.get(field.group) != name:
                continue
        elif _is_default(field, value):
            continue
        key = _camel(name)
        cls = meta.cls_by_field.get(name)
        if field.proto_type == betterproto.TYPE_MAP:
            assert field.map_types is not None
            value_cls = meta.cls_by_field.get(f"{name}.value")
            items = cast(dict[object, object], value)
            out[key] = {
                str(k): _message_out(v)
                if field.map_types[1] == betterproto.TYPE_MESSAGE
                else _scalar_out(field.map_types[1], value_cls, v)
                for k, v in items.items()
            }
        elif isinstance(value, list):
            items = cast(list[object], value)
            if field.proto_type == betterproto.TYPE_MESSAGE:
                out[key] = [_message_out(v) for v in items]
            else:
                out[key] = [_scalar_out(field.proto_type, cls, v) for v in items]
        elif field.proto_type == betterproto.TYPE_MESSAGE:
            out[key] = _message_out(value)
        else:
            out[key] = _scalar_out(field.proto_type, cls, value)
    return out


def encode_message(message: betterproto.Message, content_type: str) -> bytes:
    """*message* in the codec of *content_type* (JSON or binary)."""
    if content_type == PROTO_TYPE:
        return bytes(message)
    return json.dumps(_to_plain(message), separators=(",", ":")).encode()


# --- decoding --------------------------------------------------------------------------------


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise CodecError(f"{where}: expected an integer, got {type(value).__name__}")
    if isinstance(value, float):
        if not value.is_integer():
            raise CodecError(f"{where}: not an integer: {value!r}")
        return int(value)
    try:
        return int(value)
    except ValueError as exc:
        raise CodecError(f"{where}: not an integer: {value!r}") from exc


def _scalar_in(proto_type: str, cls: type | None, value: object, where: str) -> object:
    if value is None:
        return None
    if proto_type in _INT64 or proto_type in (
        betterproto.TYPE_INT32,
        betterproto.TYPE_UINT32,
        betterproto.TYPE_SINT32,
        betterproto.TYPE_FIXED32,
        betterproto.TYPE_SFIXED32,
    ):
        return _int(value, where)
    if proto_type == betterproto.TYPE_ENUM and cls is not None:
        return _enum_in(cls, value, where)
    if proto_type == betterproto.TYPE_BYTES:
        if not isinstance(value, str):
            raise CodecError(f"{where}: expected base64 text")
        text = value.replace("-", "+").replace("_", "/")
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except ValueError as exc:  # binascii.Error, or text that is not ASCII
            raise CodecError(f"{where}: bad base64") from exc
    if proto_type == betterproto.TYPE_BOOL:
        if not isinstance(value, bool):
            raise CodecError(f"{where}: expected true or false")
        return value
    if proto_type == betterproto.TYPE_STRING:
        if not isinstance(value, str):
            raise CodecError(f"{where}: expected a string")
        return value
    if proto_type in (betterproto.TYPE_FLOAT, betterproto.TYPE_DOUBLE):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise CodecError(f"{where}: expected a number")
        try:
            return float(value)
        except ValueError as exc:
            raise CodecError(f"{where}: not a number: {value!r}") from exc
    return value  # pragma: no cover - every proto scalar type is handled above


def _enum_in(cls: type, value: object, where: str) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return cls(value)
        except ValueError:
            raise CodecError(f"{where}: unknown {cls.__name__} value {value!r}") from None
    if isinstance(value, str):
        members = cast(dict[str, object], getattr(cls, _MEMBERS))
        prefix = _enum_prefix(cls)
        short = value[len(prefix) :] if value.startswith(prefix) else value
        if short in members:
            return members[short]
    raise CodecError(f"{where}: unknown {cls.__name__} value {value!r}")


def _message_in(cls: type, value: object, where: str) -> object:
    if cls is dt.datetime:
        if not isinstance(value, str):
            raise CodecError(f"{where}: expected an RFC 3339 timestamp")
        try:
            stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise CodecError(f"{where}: bad timestamp {value!r}") from exc
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
    if cls is JsonStruct:
        if not isinstance(value, dict):
            raise CodecError(f"{where}: expected a JSON object")
        return struct_from_plain(cast(dict[str, object], value))
    return _from_plain(cast(type[betterproto.Message], cls), value, where)


def _from_plain(cls: type[_M], plain: object, where: str) -> _M:
    if not isinstance(plain, dict):
        raise CodecError(f"{where}: expected a JSON object")
    meta = _meta(cls)
    by_key: dict[str, str] = {}
    for name in meta.meta_by_field_name:
        by_key[name] = name
        by_key[_camel(name)] = name
    kwargs: dict[str, object] = {}
    for key, value in cast(dict[str, object], plain).items():
        name = by_key.get(key)
        if name is None or value is None:
            continue
        field = meta.meta_by_field_name[name]
        here = f"{where}.{key}"
        cls_of = meta.cls_by_field.get(name)
        if field.proto_type == betterproto.TYPE_MAP:
            assert field.map_types is not None
            if not isinstance(value, dict):
                raise CodecError(f"{here}: expected a JSON object")
            key_type, value_type = field.map_types
            value_cls = meta.cls_by_field.get(f"{name}.value")
            entries: dict[object, object] = {}
            for k, v in cast(dict[str, object], value).items():
                mk = _int(k, here) if key_type not in (betterproto.TYPE_STRING,) else k
                if value_type == betterproto.TYPE_MESSAGE:
                    assert value_cls is not None
                    entries[mk] = _message_in(value_cls, v, f"{here}[{k}]")
                else:
                    entries[mk] = _scalar_in(value_type, value_cls, v, f"{here}[{k}]")
            kwargs[name] = entries
        elif field.proto_type == betterproto.TYPE_MESSAGE:
            assert cls_of is not None
            repeated = isinstance(getattr(cls(), name), list)
            if repeated:
                if not isinstance(value, list):
                    raise CodecError(f"{here}: expected a JSON array")
                items = cast(list[object], value)
                kwargs[name] = [_message_in(cls_of, v, f"{here}[{i}]") for i, v in enumerate(items)]
            else:
                kwargs[name] = _message_in(cls_of, value, here)
        elif isinstance(value, list):
            items = cast(list[object], value)
            kwargs[name] = [_scalar_in(field.proto_type, cls_of, v, here) for v in items]
        else:
            kwargs[name] = _scalar_in(field.proto_type, cls_of, value, here)
    return cls(**kwargs)


def decode_message(cls: type[_M], body: bytes, content_type: str) -> _M:
    """Decode *body* as *cls* in the codec of *content_type*.

    Raises:
        CodecError: the body is not a valid *cls* (names the offending field).
    """
    name = cls.__name__
    if content_type == PROTO_TYPE:
        try:
            return cls().parse(body)
        except Exception as exc:  # betterproto raises assorted errors on bad input
            raise CodecError(f"{name}: bad protobuf body ({type(exc).__name__})") from exc
    if not body:
        raise CodecError(f"{name}: zero-length payload is not a valid JSON object")
    try:
        plain: object = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise CodecError(f"{name}: malformed JSON ({exc})") from exc
    return _from_plain(cls, plain, name)
