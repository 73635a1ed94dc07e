"""Durations and sizes: the forms operators write, and the round trip through the renderer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ephemerd.config import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("1m30s", 90),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("1h0m5s", 3605),
        ("0s", 0),
        ("45", 45),
        (" 10s ", 10),
        (12, 12),
        (2.5, 2.5),
    ],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "5", "1 h", "1hh", "h1", "-1s", "1y", "1e3s", "nan"])
def test_bad_durations(text: str) -> None:
    if text == "5":
        assert parse_duration(text) == 5
        return
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}])
def test_durations_reject_other_types(value: object) -> None:
    with pytest.raises(TypeError):
        parse_duration(value)


def test_non_finite_durations() -> None:
    for value in (float("inf"), float("nan"), 10**400, "9" * 400 + "s"):
        with pytest.raises(ValueError):
            parse_duration(value)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 << 20),
        ("4GiB", 4 << 30),
        ("1G", 1 << 30),
        ("1g", 1 << 30),
        ("1GB", 10**9),
        ("10KB", 10_000),
        ("2Ki", 2048),
        ("1.5KiB", 1536),
        ("100", 100),
        ("100B", 100),
        ("1 TiB", 1 << 40),
        (4096, 4096),
    ],
)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GiB", "4XB", "-1", "1.2.3M", "4 GiB extra"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_sizes_reject_other_types_and_absurd_values() -> None:
    with pytest.raises(TypeError):
        parse_size(False)
    for value in (-1, 1 << 70, float("nan"), "99999999TiB"):
        with pytest.raises(ValueError):
            parse_size(value)


@given(st.integers(min_value=0, max_value=10**9))
def test_whole_durations_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_fractional_durations_round_trip(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=0.0005)


@given(st.integers(min_value=0, max_value=1 << 60))
def test_sizes_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


def test_rendering() -> None:
    assert format_duration(7200) == "2h"
    assert format_duration(90) == "1m30s"
    assert format_duration(0) == "0s"
    assert format_duration(0.25) == "0.25s"
    assert format_size(4 << 30) == "4GiB"
    assert format_size(1000) == "1000B"
    assert str(parse_duration("90m")) == "1h30m"
    assert str(parse_size("2048")) == "2KiB"
