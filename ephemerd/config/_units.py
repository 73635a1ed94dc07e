"""Durations and sizes as operators write them ("1m30s", "4GiB"), and back.

``Duration`` and ``Size`` subclass ``float`` and ``int``: every consumer sees plain seconds and
bytes, while the config decoder recognises the subclasses and parses the human forms into them.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from ._checks import kind_of

__all__ = ["Duration", "Size", "format_duration", "format_size", "parse_duration", "parse_size"]

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

# Single letters and the IEC forms are binary (as Docker reads "1g"); "KB", "MB"... are decimal.
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "ki": 1 << 10,
    "kib": 1 << 10,
    "kb": 10**3,
    "m": 1 << 20,
    "mi": 1 << 20,
    "mib": 1 << 20,
    "mb": 10**6,
    "g": 1 << 30,
    "gi": 1 << 30,
    "gib": 1 << 30,
    "gb": 10**9,
    "t": 1 << 40,
    "ti": 1 << 40,
    "tib": 1 << 40,
    "tb": 10**12,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")
_MAX_SIZE = 1 << 62


class Duration(float):
    """Seconds, written in the config as ``"30s"``, ``"1m30s"``, ``"2h"``, ``"7d"`` or a number."""

    def __str__(self) -> str:
        return format_duration(self)


class Size(int):
    """Bytes, written in the config as ``"512MiB"``, ``"4GiB"``, ``"1G"`` or a plain integer."""

    def __str__(self) -> str:
        return format_size(self)


def parse_duration(value: object) -> Duration:
    """Parse a duration; plain numbers are seconds.

    Raises:
        ValueError: malformed, negative or not finite.
        TypeError: neither a string nor a number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f'expected a duration such as "30s", got {kind_of(value)}')
    try:
        seconds = _parse_duration_text(value) if isinstance(value, str) else float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration must be finite and not negative (got {value!r})")
    return Duration(seconds)


def _parse_duration_text(text: str) -> float:
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped):
        return float(stripped)
    parts = _DURATION_PART.findall(stripped)
    if not parts or "".join(n + u for n, u in parts) != stripped:
        raise ValueError(f'invalid duration {text!r} (use e.g. "30s", "1m30s", "2h", "7d")')
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_size(value: object) -> Size:
    """Parse a size; plain integers are bytes.

    Raises:
        ValueError: malformed, unknown unit, negative or absurdly large.
        TypeError: neither a string nor a number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f'expected a size such as "512MiB", got {kind_of(value)}')
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f'invalid size {value!r} (use e.g. "512MiB", "4GiB", "1G")')
        amount = Fraction(match.group(1)) * _SIZE_UNITS[unit]  # exact, even above 2**53
    elif isinstance(value, float) and not math.isfinite(value):
        amount = Fraction(-1)
    else:
        amount = Fraction(value)
    if not 0 <= amount <= _MAX_SIZE:
        raise ValueError(f"size must be between 0 and 4EiB (got {value!r})")
    return Size(int(amount))


def format_duration(seconds: float) -> str:
    """Render seconds the way the config accepts them: ``7200`` -> ``"2h"``."""
    if seconds == 0:
        return "0s"
    if not math.isfinite(seconds):
        return repr(float(seconds))
    if seconds != int(seconds):
        # Millisecond precision: finer is noise for a daemon's timers.
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    rest = int(seconds)
    out: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def format_size(size: int) -> str:
    """Render bytes in the largest IEC unit that divides them: ``4294967296`` -> ``"4GiB"``."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{int(size)}B"
