"""``jobs --watch``: frames rendered from a recorded stream, and the plain-line mode live."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

import trio
from rich.console import Console

from ephemerd.capabilities import (
    DaemonStatus,
    JobChange,
    JobKey,
    JobState,
    JobView,
    ProviderState,
    ProviderView,
)
from ephemerd.cli._tui import WatchState, render
from ephemerd.control import WatchUpdate, open_control_server
from tests.control.fake_daemon import FakeTarget

from .conftest import CLI, start_process

NOW = 1_800_000_000.0


def _status(**overrides: object) -> DaemonStatus:
    fields: dict[str, object] = {
        "pid": 42,
        "version": "0.1.0",
        "started_at": NOW - 3600,
        "active_jobs": 2,
        "parked_jobs": 1,
        "max_concurrent": 4,
        "cordoned": False,
        "draining": False,
        "providers": (
            ProviderView(instance="github", kind="github", state=ProviderState.OK, webhook=True),
            ProviderView(
                instance="forgejo-eu",
                kind="forgejo",
                state=ProviderState.BACKING_OFF,
                last_error="503 from forge",
            ),
            ProviderView(instance="gitlab", kind="gitlab", state=ProviderState.OK),
        ),
    }
    fields.update(overrides)
    return DaemonStatus(**fields)  # type: ignore[arg-type]


def _job(instance: str, job_id: str, state: JobState, **fields: object) -> JobView:
    return JobView(
        key=JobKey(instance, job_id),
        kind=instance.split("-", maxsplit=1)[0],
        state=state,
        repo=str(fields.get("repo", "acme/widgets")),
        job_name=str(fields.get("job_name", f"build-{job_id}")),
        runner_name=str(fields.get("runner_name", "")),
        queued_at=NOW - 300,
        started_at=float(fields.get("started_at", 0.0)),  # type: ignore[arg-type]
    )


RECORDED = [
    WatchUpdate(
        snapshot=True,
        changes=(
            JobChange(
                job=_job(
                    "github",
                    "101",
                    JobState.RUNNING,
                    started_at=NOW - 125,
                    runner_name="ephemerd-github-101",
                )
            ),
            JobChange(job=_job("forgejo-eu", "7", JobState.PARKED)),
        ),
        status=_status(),
    ),
    WatchUpdate(
        snapshot=False,
        changes=(JobChange(job=_job("github", "102", JobState.CLAIMING, repo="acme/api")),),
        status=_status(),
    ),
    WatchUpdate(snapshot=False, changes=(), status=_status(cordoned=True)),
]


def _frame(state: WatchState) -> str:
    console = Console(width=120, record=True, file=io.StringIO(), color_system=None)
    console.print(render(state))
    return console.export_text()


def _replay(updates: list[WatchUpdate]) -> WatchState:
    state = WatchState()
    state.now = NOW
    for update in updates:
        state.apply(update)
    return state


def test_frame_has_a_section_per_provider_and_a_row_per_job() -> None:
    text = _frame(_replay(RECORDED[:2]))
    lines = text.splitlines()
    titles = [line for line in lines if line and not line.startswith(" ") and "STATE" not in line]
    assert titles[0].startswith("forgejo-eu (forgejo)  backing_off  503 from forge")
    assert titles[1].startswith("github  ok webhook")
    assert titles[2].startswith("gitlab  ok")
    row = next(line for line in lines if "101" in line)
    assert row.split() == [
        "running",
        "101",
        "acme/widgets",
        "build-101",
        "ephemerd-github-101",
        "2m05s",
    ]
    assert next(line for line in lines if "102" in line).split()[:3] == [
        "claiming",
        "102",
        "acme/api",
    ]
    assert "parked" in next(line for line in lines if " 7 " in line)
    assert "no jobs" in text  # gitlab has none
    assert lines[-1] == "capacity 2/4 active, 1 parked  ·  accepting jobs"


def test_frame_footer_shows_cordon_and_drain() -> None:
    assert "cordoned (no new jobs)" in _frame(_replay(RECORDED)).splitlines()[-1]
    drained = _replay(
        [*RECORDED, WatchUpdate(snapshot=False, changes=(), status=_status(draining=True))]
    )
    assert "draining" in _frame(drained).splitlines()[-1]


def test_frame_says_reconnecting_when_the_stream_is_lost() -> None:
    state = _replay(RECORDED)
    state.problem = "lost the connection to ephemerd on /x/ephemerd.sock"
    footer = _frame(state).splitlines()[-2:]
    assert footer[0].startswith("capacity 2/4 active")
    assert footer[1].startswith("reconnecting… (lost the connection")
    assert "101" in _frame(state)  # the last known table stays on screen


def test_elapsed_times_move_with_the_clock_only() -> None:
    state = _replay(RECORDED)
    state.now = NOW + 60
    assert "3m05s" in _frame(state)


def test_a_new_snapshot_replaces_the_table_and_reports_the_difference() -> None:
    state = _replay(RECORDED)
    finished = _job("github", "101", JobState.SUCCEEDED, started_at=NOW - 125)
    changes = state.apply(
        WatchUpdate(snapshot=True, changes=(JobChange(job=finished),), status=_status())
    )
    assert sorted((view.key.job_id, removed) for view, removed in changes) == [
        ("101", False),
        ("102", True),
        ("7", True),
    ]
    assert list(state.jobs) == [JobKey("github", "101")]


def test_removals_and_repeats() -> None:
    state = _replay(RECORDED[:1])
    job = state.jobs[JobKey("github", "101")]
    again = WatchUpdate(snapshot=False, changes=(JobChange(job=job),), status=_status())
    assert state.apply(again) == []  # no change, no line
    gone = WatchUpdate(
        snapshot=False, changes=(JobChange(job=job, removed=True),), status=_status()
    )
    assert state.apply(gone) == [(job, True)]
    assert state.apply(gone) == []


async def _read_until(stream: trio.abc.ReceiveStream, buffer: bytearray, needle: bytes) -> None:
    while needle not in buffer:
        chunk = await stream.receive_some()
        assert chunk, f"stream ended before {needle!r}; got {bytes(buffer)!r}"
        buffer += chunk


async def test_watch_without_a_tty_prints_lines_and_survives_a_restart(tmp_path: Path) -> None:
    sock = tmp_path / "ephemerd.sock"
    first = FakeTarget(tmp_path)
    first.add("github", "1", started_at=time.time() - 5)
    out, err = bytearray(), bytearray()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            stop_first = trio.Event()

            async def serve(
                target: FakeTarget, stop: trio.Event, task_status: trio.TaskStatus[None]
            ) -> None:
                async with open_control_server(target, socket_path=sock):
                    task_status.started()
                    await stop.wait()

            await nursery.start(serve, first, stop_first)
            process = await start_process(
                nursery, [*CLI, "--data-dir", str(tmp_path), "jobs", "--watch"], stderr=True
            )
            assert process.stdout is not None and process.stderr is not None
            await _read_until(process.stdout, out, b"github/1 running acme/widgets build-1")
            first.add("github", "2")
            await _read_until(process.stdout, out, b"github/2 running")

            stop_first.set()  # the daemon goes away...
            await _read_until(process.stderr, err, b"reconnecting")
            second = FakeTarget(tmp_path)  # ...and comes back with a different table
            second.put(first.table[JobKey("github", "2")])
            second.add("github", "3", state=JobState.PARKED)
            await nursery.start(serve, second, trio.Event())
            await _read_until(process.stdout, out, b"github/3 parked")
            await _read_until(process.stdout, out, b"github/1 removed")
            await _read_until(process.stderr, err, b"reconnected")

            process.send_signal(signal.SIGINT)
            assert await process.wait() == 130
            nursery.cancel_scope.cancel()
    assert b"Traceback" not in err
    assert out.count(b"github/2 running") == 1  # unchanged across the restart: no new line


async def test_watch_exits_1_when_the_daemon_is_not_running(tmp_path: Path) -> None:
    result = await trio.run_process(
        [*CLI, "--data-dir", str(tmp_path), "jobs", "--watch"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.decode().startswith("error: ephemerd is not running")


def test_every_job_state_has_a_style_and_pending_jobs_show() -> None:
    from ephemerd.cli._tui import _STATE_STYLE  # pyright: ignore[reportPrivateUsage]

    assert set(_STATE_STYLE) == set(JobState)
    pending = _job("gitlab", "5001", JobState.PENDING, repo="acme/tools/app", job_name="build")
    update = WatchUpdate(snapshot=True, changes=(JobChange(job=pending),), status=_status())
    text = _frame(_replay([update]))
    assert "pending" in text and "acme/tools/app" in text and "build" in text
