"""A mock clock that jumps only when the loop is idle for a while, so real loopback I/O
to the fake server (which runs in the same Trio run) completes before time jumps."""

from __future__ import annotations

import pytest
import trio.testing


@pytest.fixture
def io_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.05)
