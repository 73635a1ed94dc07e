"""Counters, gauges and histograms with labels, rendered in Prometheus text format 0.0.4.

Written here rather than taken from ``prometheus-client``: what ephemerd needs (three metric
types, fixed label names, one text renderer) is about 150 lines, while that library's
defaults are process-global (the default registry, the process and platform collectors) and
every caller would have to remember to avoid them. A ``Registry`` is a plain object owned by
whoever creates it, so two daemons in one test process never see each other's numbers.

Label values must come from small, fixed sets (instance names, enums). A family refuses to
grow past ``max_series`` label combinations: the extra samples are dropped and a warning is
logged once, so a bug that puts an unbounded value in a label cannot exhaust memory.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

__all__ = [
    "CONTENT_TYPE",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
]

_log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_MAX_SERIES = 1000

LabelKey = tuple[str, ...]


def format_value(value: float) -> str:
    """A sample value as the exposition format spells it (``+Inf``, ``NaN``, ``3``, ``0.25``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


def _check_name(name: str) -> None:
    ok = name and (name[0].isalpha() or name[0] in "_:")
    if not ok or not all(c.isascii() and (c.isalnum() or c in "_:") for c in name):
        raise ValueError(f"invalid metric or label name {name!r}")


class _Family:
    """Shared bookkeeping: name, help text, label names and the series cap."""

    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str], *, max_series: int) -> None:
        _check_name(name)
        for label in labels:
            _check_name(label)
            if label.startswith("__") or label == "le":
                raise ValueError(f"reserved label name {label!r} on {name}")
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self._label_set = frozenset(self.label_names)
        self._max_series = max_series
        self._warned = False

    def _key(self, labels: dict[str, str]) -> LabelKey:
        if labels.keys() != self._label_set:
            want = ", ".join(self.label_names) or "none"
            raise ValueError(f"{self.name} takes labels ({want}), got ({', '.join(labels)})")
        return tuple(labels[n] for n in self.label_names)

    def _admit(self, key: LabelKey, known: Mapping[LabelKey, object]) -> bool:
        if key in known or len(known) < self._max_series:
            return True
        if not self._warned:
            self._warned = True
            _log.warning(
                "metric %s reached %d series; new label values dropped", self.name, self._max_series
            )
        return False

    def _header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


_F = TypeVar("_F", bound=_Family)


class _Scalar(_Family):
    """A counter or gauge: one float per label combination."""

    def __init__(
        self, name: str, help: str, labels: Sequence[str] = (), *, max_series: int
    ) -> None:
        super().__init__(name, help, labels, max_series=max_series)
        self._values: dict[LabelKey, float] = {} if labels else {(): 0.0}

    def get(self, **labels: str) -> float:
        """The current value for these labels (0 if never recorded)."""
        return self._values.get(self._key(labels), 0.0)

    def _add(self, amount: float, labels: dict[str, str]) -> None:
        key = self._key(labels)
        if self._admit(key, self._values):
            self._values[key] = self._values.get(key, 0.0) + amount

    def render(self) -> list[str]:
        lines = self._header()
        for key, value in sorted(self._values.items()):
            lines.append(f"{self.name}{_label_text(self.label_names, key)} {format_value(value)}")
        return lines


class Counter(_Scalar):
    """A value that only goes up (events seen, jobs finished)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        """Add *amount* (>= 0) to the series named by *labels*.

        Raises:
            ValueError: *amount* is negative, or *labels* do not match the family's names.
        """
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot decrease")
        self._add(amount, labels)


class Gauge(_Scalar):
    """A value that goes up and down (jobs running now, capacity)."""

    kind = "gauge"

    def set(self, value: float, /, **labels: str) -> None:
        key = self._key(labels)
        if self._admit(key, self._values):
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        self._add(amount, labels)

    def dec(self, amount: float = 1.0, /, **labels: str) -> None:
        self._add(-amount, labels)


class _HistogramSeries:
    __slots__ = ("counts", "sum", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.sum = 0.0
        self.total = 0


class Histogram(_Family):
    """A distribution of observations (durations) over fixed upper bounds.

    Buckets are rendered cumulative, each with its ``le`` bound, then ``+Inf`` (equal to
    ``_count``), then ``_sum`` and ``_count``.
    """

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        buckets: Iterable[float],
        max_series: int,
    ) -> None:
        super().__init__(name, help, labels, max_series=max_series)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"{name}: buckets must be distinct and not empty")
        self.buckets = tuple(bounds)
        self._series: dict[LabelKey, _HistogramSeries] = {}

    def observe(self, value: float, /, **labels: str) -> None:
        """Record one observation (NaN is ignored)."""
        key = self._key(labels)
        if math.isnan(value) or not self._admit(key, self._series):
            return
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _HistogramSeries(len(self.buckets))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                series.counts[i] += 1
                break
        series.sum += value
        series.total += 1

    def count(self, **labels: str) -> int:
        series = self._series.get(self._key(labels))
        return 0 if series is None else series.total

    def render(self) -> list[str]:
        lines = self._header()
        names = (*self.label_names, "le")
        for key, series in sorted(self._series.items(), key=lambda item: item[0]):
            running = 0
            for bound, count in zip(self.buckets, series.counts, strict=True):
                running += count
                labels = _label_text(names, (*key, format_value(bound)))
                lines.append(f"{self.name}_bucket{labels} {running}")
            lines.append(f"{self.name}_bucket{_label_text(names, (*key, '+Inf'))} {series.total}")
            plain = _label_text(self.label_names, key)
            lines.append(f"{self.name}_sum{plain} {format_value(series.sum)}")
            lines.append(f"{self.name}_count{plain} {series.total}")
        return lines


class Registry:
    """A set of metric families, rendered together.

    Args:
        max_series: the label-combination cap of every family created here.
    """

    def __init__(self, *, max_series: int = DEFAULT_MAX_SERIES) -> None:
        self._families: dict[str, _Family] = {}
        self._max_series = max_series
        self._before_render: list[Callable[[], None]] = []

    def _add(self, family: _F) -> _F:
        if family.name in self._families:
            raise ValueError(f"metric {family.name} registered twice")
        self._families[family.name] = family
        return family

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help, labels, max_series=self._max_series))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help, labels, max_series=self._max_series))

    def histogram(
        self, name: str, help: str, labels: Sequence[str] = (), *, buckets: Iterable[float]
    ) -> Histogram:
        return self._add(
            Histogram(name, help, labels, buckets=buckets, max_series=self._max_series)
        )

    def on_render(self, hook: Callable[[], None]) -> None:
        """Run *hook* before each render, to refresh values computed at scrape time."""
        self._before_render.append(hook)

    def render(self) -> str:
        """Every family in registration order, as one exposition text ending in a newline."""
        for hook in self._before_render:
            hook()
        lines: list[str] = []
        for family in self._families.values():
            lines.extend(family.render())
        return "\n".join(lines) + "\n"
