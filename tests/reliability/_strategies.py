"""Hypothesis strategies shared by the fuzz tests: JSON of any shape, near-miss documents."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=False,
)
"""Bounded: every fuzz test here stays within a few seconds."""

EDGE_TEXTS = [
    "",
    "0",
    "-1",
    "1e400",
    "NaN",
    "\x00",
    "é",
    "queued",
    "self-hosted",
    "ZZ==",
    "2024-13-01",
]
_TEXTS = st.text(max_size=12) | st.sampled_from(EDGE_TEXTS)
SCALARS = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, 3, 99, -1, 2**63, 2**64 + 1])
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXTS
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXTS, inner, max_size=5),
    max_leaves=20,
)
"""Any JSON value."""


def near(template: dict[str, object]) -> st.SearchStrategy[dict[str, object]]:
    """Documents shaped like *template* (its keys, nested) with any value in any slot."""
    slots: dict[str, st.SearchStrategy[object]] = {}
    for key, value in template.items():
        if isinstance(value, dict):
            slots[key] = near(value) | JSON  # pyright: ignore[reportUnknownArgumentType]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            slots[key] = st.lists(near(value[0]), max_size=3) | JSON  # pyright: ignore[reportUnknownArgumentType]
        else:
            slots[key] = st.just(value) | JSON
    return st.fixed_dictionaries({}, optional=slots)


def encoded(values: st.SearchStrategy[object]) -> st.SearchStrategy[bytes]:
    """*values* as JSON bytes, or arbitrary bytes (truncated, binary, not UTF-8)."""
    as_json = values.map(lambda v: json.dumps(v).encode())
    deep = st.sampled_from([2, 5000, 100_000]).map(lambda n: b"[" * n + b"]" * n)
    return as_json | as_json.map(lambda b: b[: len(b) // 2]) | st.binary(max_size=64) | deep
