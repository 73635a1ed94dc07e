"""A small parser of the Prometheus text format 0.0.4, strict enough to catch mistakes."""

from __future__ import annotations

import math
import re

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(rf'({_NAME})="((?:[^"\\]|\\.)*)"(,|$)')

Sample = tuple[str, tuple[tuple[str, str], ...], float]


def _unescape(text: str) -> str:
    out: list[str] = []
    chars = iter(text)
    for c in chars:
        if c != "\\":
            out.append(c)
            continue
        nxt = next(chars)
        out.append({"n": "\n", "\\": "\\", '"': '"'}[nxt])
    return "".join(out)


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        assert m, f"bad labels at {text[pos:]!r}"
        pairs.append((m.group(1), _unescape(m.group(2))))
        pos = m.end()
    return tuple(pairs)


def _value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}[text]
    return float(text)


def parse(text: str) -> tuple[dict[str, str], list[Sample]]:
    """(TYPE per family, samples); asserts on any malformed line."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: list[Sample] = []
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helps, f"HELP twice for {name}"
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            assert name not in types, f"TYPE twice for {name}"
            types[name] = kind
        else:
            m = _SAMPLE.match(line)
            assert m, f"bad sample line {line!r}"
            name = m.group(1)
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in types or family in types, f"sample before TYPE: {line!r}"
            samples.append((name, _labels(m.group(3) or ""), _value(m.group(4))))
    return types, samples


def value(samples: list[Sample], name: str, **labels: str) -> float:
    want = tuple(sorted(labels.items()))
    found = [v for n, ls, v in samples if n == name and tuple(sorted(ls)) == want]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]
