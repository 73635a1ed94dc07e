"""The renderings, checked against msgspec's own JSON and against the Struct views.

``status`` renders a ``StatusReply`` with the standard library; ``jobs`` renders Structs.
Both go through ``to_json``, which must mean what ``msgspec.json`` meant before: the same
values under the same sorted keys, non-finite floats as ``null``.
"""

from __future__ import annotations

import json

import hypothesis.strategies as st
import msgspec
from hypothesis import given

from ephemerd.capabilities import (
    DaemonStatus,
    JobKey,
    JobState,
    JobView,
    ProviderState,
    ProviderView,
)
from ephemerd.cli._format import state_words, status_text, to_json
from ephemerd.control import StatusReply

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_providers = st.builds(
    ProviderView,
    instance=_text,
    kind=_text,
    state=st.sampled_from(ProviderState),
    webhook=st.booleans(),
    last_error=_text,
    last_ok_at=st.floats(),
    active_jobs=st.integers(0, 2**32 - 1),
)
_statuses = st.builds(
    DaemonStatus,
    pid=st.integers(-(2**31), 2**31 - 1),
    version=_text,
    started_at=st.floats(),
    active_jobs=st.integers(0, 2**32 - 1),
    parked_jobs=st.integers(0, 2**32 - 1),
    max_concurrent=st.integers(0, 2**32 - 1),
    cordoned=st.booleans(),
    draining=st.booleans(),
    providers=st.lists(_providers, max_size=3).map(tuple),
)


def _msgspec_json(value: object) -> str:
    return msgspec.json.format(msgspec.json.encode(value, order="sorted"), indent=2).decode()


@given(_statuses, st.floats())
def test_status_json_means_what_msgspec_wrote(status: DaemonStatus, uptime: float) -> None:
    ours = to_json(StatusReply.of(status).to_builtins(), uptime_seconds=uptime)
    theirs = _msgspec_json({**msgspec.to_builtins(status), "uptime_seconds": uptime})
    assert json.loads(ours) == json.loads(theirs)
    assert ours.splitlines()[1:3] == theirs.splitlines()[1:3]  # same layout, same key order


def test_structs_still_convert() -> None:
    job = JobView(
        key=JobKey("github", "7"),
        kind="github",
        state=JobState.RUNNING,
        labels=("self-hosted", "linux"),
        exit_code=None,
        queued_at=float("nan"),
    )
    ours = to_json([job])
    assert json.loads(ours) == json.loads(_msgspec_json([job]))
    assert '"queued_at": null' in ours
    assert ours == _msgspec_json([job])  # no exponents here: byte for byte


def test_state_words_takes_either_form() -> None:
    status = DaemonStatus(
        pid=1,
        version="v",
        started_at=0.0,
        active_jobs=0,
        parked_jobs=0,
        max_concurrent=1,
        cordoned=True,
        draining=False,
    )
    assert state_words(status) == state_words(StatusReply.of(status)) == "cordoned (no new jobs)"


def test_status_text_lines_up_providers() -> None:
    status = DaemonStatus(
        pid=42,
        version="1.2.3",
        started_at=1000.0,
        active_jobs=1,
        parked_jobs=2,
        max_concurrent=4,
        cordoned=False,
        draining=True,
        providers=(
            ProviderView(instance="gh", kind="github", state=ProviderState.OK, webhook=True),
            ProviderView(
                instance="forgejo-eu",
                kind="forgejo",
                state=ProviderState.BACKING_OFF,
                last_error="503 from forge",
                active_jobs=1,
            ),
        ),
    )
    assert status_text(StatusReply.of(status), now=1000.0 + 3725) == "\n".join(
        [
            "ephemerd 1.2.3 (pid 42), up 1h02m",
            "jobs:      1 active / 4 max, 2 parked",
            "state:     draining (no new jobs; exits when running jobs finish)",
            "providers:",
            "  gh          github     ok webhook, 0 active",
            "  forgejo-eu  forgejo    backing_off, 1 active  (503 from forge)",
        ]
    )
