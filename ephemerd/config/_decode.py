"""Turn parsed TOML into sections, and msgspec's complaints into one line an operator reads.

msgspec says ``Expected `int`, got `str` - at `$.runner.max_concurrent```; the operator reads
``config.toml: runner.max_concurrent: expected an integer, got a string``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TypeVar

import msgspec
import msgspec.inspect as mi

from ephemerd._errors import ConfigError

from ._checks import Address, kind_of
from ._secret import Secret
from ._units import Duration, Size, parse_duration, parse_size

__all__ = ["config_error", "decode_section"]

_T = TypeVar("_T")

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>.*)`)?$", re.DOTALL)
# A section's own checks say "<key>: <problem>" (see _checks.invalid).
_OWN = re.compile(
    r"^(?P<key>[A-Za-z_]\w*(?:\[\d+\])*(?:\.[A-Za-z_]\w*(?:\[\d+\])*)*): (?P<rest>.*)$"
)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>.*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>.*)`$")
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]*)`, got `(?P<got>[^`]*)`$")
_ENUM = re.compile(r"^Invalid enum value (?P<value>.*)$")
_PATH_PART = re.compile(r"\.(\w+)|\[(\d+|\.\.\.)\]")

_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "array": "an array",
    "object": "a table",
    "datetime": "a date or time",
    "date": "a date or time",
    "time": "a date or time",
}


def config_error(label: str, key: str, problem: str) -> ConfigError:
    """``<file>: <dotted key>: <problem>`` on one line, whatever the key or problem holds."""
    text = f"{label}: {key}: {problem}" if key else f"{label}: {problem}"
    return ConfigError(text.replace("\r", "\\r").replace("\n", "\\n"))


def decode_section(data: object, cls: type[_T], *, label: str, where: str = "") -> _T:
    """Convert parsed TOML *data* into *cls*, running every section's checks.

    Args:
        data: what ``tomllib`` produced for this part of the file.
        cls: the section Struct.
        label: the file name for messages.
        where: the dotted key of *data* in the file (``github[1]``), "" at the top.

    Raises:
        ConfigError: naming the file and the dotted key of the first problem.
    """
    try:
        return msgspec.convert(data, cls, dec_hook=_dec_hook)
    except msgspec.ValidationError as error:
        key, problem = _translate(str(error), cls)
        raise config_error(label, _join(where, key), problem) from None


def _dec_hook(type_: type, obj: object) -> object:
    """Parse the config's own value types; msgspec calls this for any non-native type."""
    if type_ is Duration:
        return parse_duration(obj)
    if type_ is Size:
        return parse_size(obj)
    if isinstance(obj, type_):
        return obj  # a Secret the loader read from a file or the environment
    if not isinstance(obj, str):
        raise TypeError(f"expected a string, got {kind_of(obj)}")
    if not obj:
        raise ValueError("must not be empty")
    if type_ is Secret:
        return Secret(obj)
    if type_ is Address:
        return Address.parse(obj)
    if type_ is Path:
        return Path(obj).expanduser()
    raise NotImplementedError


def _translate(raw: str, root: type) -> tuple[str, str]:
    """Split msgspec's message into (dotted key, operator's wording)."""
    match = _AT.match(raw)
    message = match["message"] if match else raw
    path = match["path"] or "" if match else ""
    key = _dotted(path)
    if own := _OWN.match(message):
        return _join(key, own["key"]), own["rest"]
    if unknown := _UNKNOWN.match(message):
        return _join(key, unknown["key"]), "unknown key"
    if missing := _MISSING.match(message):
        name = missing["key"]
        hint = f" (or {name}_file)" if _is_secret(_lookup(root, f"{path}.{name}")) else ""
        return _join(key, name), f"required{hint}"
    if expected := _EXPECTED.match(message):
        wants = [_TYPE_WORDS.get(w, w) for w in expected["want"].split(" | ") if w != "null"]
        got = _TYPE_WORDS.get(expected["got"], expected["got"])
        return key, f"expected {' or '.join(dict.fromkeys(wants))}, got {got}"
    if enum := _ENUM.match(message):
        info = _lookup(root, path)
        if isinstance(info, mi.LiteralType):
            choices = ", ".join(str(v) for v in info.values)
            return key, f"must be one of {choices} (got {enum['value']})"
        return key, f"invalid value {enum['value']}"
    return key, message[:1].lower() + message[1:]


def _dotted(path: str) -> str:
    """``.runner.retry.schedule[2]`` -> ``runner.retry.schedule[2]``."""
    return path.removeprefix(".").replace("[...]", "")


def _join(prefix: str, key: str) -> str:
    if not prefix:
        return key
    if not key:
        return prefix
    return prefix + key if key.startswith("[") else f"{prefix}.{key}"


def _lookup(root: type, path: str) -> mi.Type | None:
    """The declared type at a msgspec error path, to word the message (choices, secrets)."""
    info: mi.Type | None = _type_info(root)
    for name, _index in _PATH_PART.findall(path):
        info = _unwrap(info)
        if name and isinstance(info, mi.StructType):
            info = next((f.type for f in info.fields if f.encode_name == name), None)
        elif not name and isinstance(info, mi.ListType | mi.VarTupleType | mi.DictType):
            info = info.value_type if isinstance(info, mi.DictType) else info.item_type
        else:
            return None
    return _unwrap(info)


@functools.cache
def _type_info(root: type) -> mi.Type:
    return mi.type_info(root)


def _unwrap(info: mi.Type | None) -> mi.Type | None:
    """``X | None`` -> ``X``, so lookups see through optional fields."""
    if isinstance(info, mi.UnionType):
        rest = [t for t in info.types if not isinstance(t, mi.NoneType)]
        return rest[0] if len(rest) == 1 else info
    return info


def _is_secret(info: mi.Type | None) -> bool:
    return isinstance(info, mi.CustomType) and info.cls is Secret
