"""``lone_exception``: what a nursery's exception group means to the caller."""

from __future__ import annotations

import pytest
import trio

from ephemerd._errors import JobNotFound, SandboxError, lone_exception


async def test_a_failing_task_and_its_cancelled_sibling_read_as_the_failure():
    async def fail() -> None:
        raise JobNotFound("gone")

    with pytest.raises(BaseExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.start_soon(fail)
    assert isinstance(lone_exception(caught.value), JobNotFound)


def test_nested_single_groups_unwrap_and_real_plurals_stay_groups():
    inner = SandboxError("one")
    assert lone_exception(ExceptionGroup("a", [ExceptionGroup("b", [inner])])) is inner
    both = ExceptionGroup("a", [SandboxError("one"), JobNotFound("two")])
    assert lone_exception(both) is both
    plain = KeyError("x")
    assert lone_exception(plain) is plain
