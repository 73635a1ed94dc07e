"""Small validators shared by the config sections, and the ``Address`` value type.

Validators raise ``ValueError("<key>: <problem>")``; the loader prefixes the section's dotted
path, so an operator reads ``runner.max_concurrent: must be between 1 and 1024 (got 0)``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec

__all__ = [
    "Address",
    "Section",
    "check_choice",
    "check_items",
    "check_name",
    "check_range",
    "check_url",
    "invalid",
    "kind_of",
]

_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
MAX_NAME_LENGTH = 32


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every config section: immutable, and strict about unknown keys."""


def invalid(key: str, problem: str) -> ValueError:
    """The error a section's ``__post_init__`` raises for one of its keys."""
    return ValueError(f"{key}: {problem}")


def kind_of(value: object) -> str:
    """Name a TOML value's type the way an operator thinks of it."""
    match value:
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a number"
        case str():
            return "a string"
        case list() | tuple():
            return "an array"
        case dict():
            return "a table"
        case _:
            return "a date or time"


def check_range(
    key: str,
    value: float,
    low: float,
    high: float,
    *,
    show: Callable[[float], str] | None = None,
) -> None:
    """Raises: ValueError unless ``low <= value <= high`` (NaN never is).

    *show* renders the numbers in the message (e.g. as sizes); plain numbers by default.
    """
    if not (low <= value <= high) or (isinstance(value, float) and math.isnan(value)):
        fmt = show or _num
        raise invalid(key, f"must be between {fmt(low)} and {fmt(high)} (got {fmt(value)})")


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    """Raises: ValueError unless *value* is one of *choices*."""
    if value not in choices:
        raise invalid(key, f"must be one of {', '.join(choices)} (got {value!r})")


def check_url(key: str, value: str) -> str:
    """Return *value* without a trailing ``/``.

    Raises:
        ValueError: not an absolute http(s) URL.
    """
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port
    except ValueError:
        ok = False
    if not ok:
        raise invalid(key, f"must be an http:// or https:// URL (got {value!r})")
    return value.rstrip("/")


def check_name(key: str, value: str) -> None:
    """Instance names end up in runner and sandbox names, so they stay short and plain."""
    if not _INSTANCE_NAME.fullmatch(value) or len(value) > MAX_NAME_LENGTH:
        raise invalid(
            key,
            f"must match [A-Za-z0-9][A-Za-z0-9_-]* and be at most {MAX_NAME_LENGTH} "
            f"characters (got {value!r})",
        )


def check_items(key: str, values: tuple[str, ...]) -> None:
    """Labels, repos, tags: each non-empty, without spaces or commas."""
    for index, item in enumerate(values):
        if not item or any(c.isspace() or c == "," for c in item):
            raise invalid(
                f"{key}[{index}]", f"must be non-empty, without spaces or commas (got {item!r})"
            )


class Address:
    """A ``host:port`` to listen on or dial; IPv6 hosts are written ``[::1]:8080``.

    Immutable; ``str()`` gives the canonical ``host:port`` form.
    """

    __slots__ = ("_host", "_port")

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``host:port``; port 0 (pick a free one) is allowed here.

        Raises:
            ValueError: not ``host:port``, a bad host, or a port outside 0..65535.
        """
        problem = f"must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080 (got {text!r})"
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit() or int(port_text) > 65535:
            raise ValueError(problem)
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(problem) from None
        elif not _HOSTNAME.fullmatch(host):
            raise ValueError(problem)
        return cls(host, int(port_text))

    def __str__(self) -> str:
        return f"[{self._host}]:{self._port}" if ":" in self._host else f"{self._host}:{self._port}"

    def __repr__(self) -> str:
        return f"Address({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Address):
            return NotImplemented
        return (self._host, self._port) == (other._host, other._port)

    def __hash__(self) -> int:
        return hash((self._host, self._port))


def _num(value: float) -> str:
    return f"{float(value):g}" if isinstance(value, float) else str(int(value))
