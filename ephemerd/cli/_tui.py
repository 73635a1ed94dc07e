"""``ephemerd jobs --watch``: a live table fed by the WatchJobs stream.

The screen is redrawn when an update arrives, and once a second so elapsed times move;
nothing polls the daemon. ``render(state)`` is a pure function of a ``WatchState``, so a
test can replay a recorded stream and read the frame. When the daemon goes away the
footer says "reconnecting…" and the stream is reopened with backoff; the snapshot the
new stream starts with replaces the table. When stdout is not a terminal, each change is
printed as one plain line instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ephemerd.capabilities import DaemonStatus, JobKey, JobState, JobView, ProviderState
from ephemerd.control import WatchUpdate

from ._format import format_age, job_line, state_words
from ._options import GlobalOptions, run_trio

__all__ = ["WatchState", "render", "watch_jobs"]

SNAPSHOT_TIMEOUT = 5.0

_STATE_STYLE = {
    JobState.PENDING: "dim italic",
    JobState.PARKED: "dim",
    JobState.CLAIMING: "cyan",
    JobState.STARTING: "cyan",
    JobState.RUNNING: "bold green",
    JobState.STOPPING: "yellow",
    JobState.RETRYING: "yellow",
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "bold red",
    JobState.CANCELLED: "magenta",
    JobState.ELSEWHERE: "dim",
}
_PROVIDER_STYLE = {
    ProviderState.STARTING: "cyan",
    ProviderState.OK: "green",
    ProviderState.BACKING_OFF: "yellow",
    ProviderState.STOPPED: "red",
}


class WatchState:
    """What the screen shows: the job table, the last status, and the connection."""

    def __init__(self) -> None:
        self.jobs: dict[JobKey, JobView] = {}
        self.status: DaemonStatus | None = None
        self.problem = ""  # why we are disconnected; "" while the stream is live
        self.now = time.time()

    def apply(self, update: WatchUpdate) -> list[tuple[JobView, bool]]:
        """Take in one update; return what changed as ``(view, removed)`` pairs."""
        self.status = update.status
        self.problem = ""
        changed: list[tuple[JobView, bool]] = []
        if update.snapshot:
            fresh = {c.job.key: c.job for c in update.changes if not c.removed}
            changed += [(view, True) for key, view in self.jobs.items() if key not in fresh]
            changed += [(view, False) for key, view in fresh.items() if self.jobs.get(key) != view]
            self.jobs = fresh
            return changed
        for change in update.changes:
            key = change.job.key
            if change.removed:
                if self.jobs.pop(key, None) is not None:
                    changed.append((change.job, True))
            elif self.jobs.get(key) != change.job:
                self.jobs[key] = change.job
                changed.append((change.job, False))
        return changed


def _elapsed(job: JobView, now: float) -> str:
    start = job.started_at or job.queued_at
    return format_age((job.finished_at or now) - start) if start else "-"


def _provider_title(instance: str, status: DaemonStatus | None, jobs: list[JobView]) -> Text:
    view = next((p for p in status.providers if p.instance == instance), None) if status else None
    kind = view.kind if view else (jobs[0].kind if jobs else "")
    title = Text(instance, style="bold")
    if kind and kind != instance:
        title.append(f" ({kind})")
    if view is not None:
        title.append("  ")
        title.append(view.state.value, style=_PROVIDER_STYLE.get(view.state, ""))
        if view.webhook:
            title.append(" webhook", style="dim")
        if view.last_error:
            title.append(f"  {view.last_error}", style="red")
    return title


def _job_table(jobs: list[JobView], now: float) -> Table:
    table = Table(expand=True, box=None, pad_edge=False, header_style="bold dim")
    for name, ratio in (("STATE", 1), ("JOB", 1), ("REPO", 2), ("NAME", 2), ("RUNNER", 2)):
        table.add_column(name, ratio=ratio, overflow="ellipsis", no_wrap=True)
    table.add_column("ELAPSED", justify="right", no_wrap=True)
    if not jobs:
        table.add_row(Text("no jobs", style="dim"), "", "", "", "", "")
    for job in jobs:
        table.add_row(
            Text(job.state.value, style=_STATE_STYLE.get(job.state, "")),
            job.key.job_id,
            job.repo or "-",
            job.job_name or "-",
            job.runner_name or "-",
            _elapsed(job, now),
        )
    return table


def _footer(state: WatchState) -> Text:
    footer = Text()
    status = state.status
    if status is not None:
        footer.append(
            f"capacity {status.active_jobs}/{status.max_concurrent} active,"
            f" {status.parked_jobs} parked  ·  "
        )
        style = "bold red" if status.draining else "bold yellow" if status.cordoned else "green"
        footer.append(state_words(status), style=style)
    if state.problem:
        if footer:
            footer.append("\n")
        footer.append(f"reconnecting… ({state.problem})", style="bold yellow")
    elif status is None:
        footer.append("connecting…", style="dim")
    return footer


def render(state: WatchState) -> RenderableType:
    """The whole frame for *state*: one section per provider instance, then the footer."""
    by_instance: dict[str, list[JobView]] = {}
    if state.status is not None:
        for provider in state.status.providers:
            by_instance.setdefault(provider.instance, [])
    for job in sorted(state.jobs.values(), key=lambda j: j.key):
        by_instance.setdefault(job.key.instance, []).append(job)
    parts: list[RenderableType] = []
    for instance, jobs in sorted(by_instance.items()):
        parts.append(_provider_title(instance, state.status, jobs))
        parts.append(Padding(_job_table(jobs, state.now), (0, 0, 0, 2)))
        parts.append(Text())
    parts.append(_footer(state))
    return Group(*parts)


def watch_jobs(opts: GlobalOptions) -> int:
    """Run the watch until Ctrl-C; the first connection must succeed, later ones may wait."""
    import trio

    from ephemerd._errors import ControlError
    from ephemerd._retry import Backoff, RetryPolicy
    from ephemerd.control import open_control_client

    console = Console()
    interactive = console.is_terminal
    state = WatchState()
    backoff = Backoff(RetryPolicy.exponential(first=0.5, cap=10.0))

    def note(line: str) -> None:
        print(f"ephemerd: {line}", file=sys.stderr, flush=True)

    def take(update: WatchUpdate, redraw: Callable[[], None]) -> None:
        if state.problem and not interactive:
            note("reconnected")
        changes = state.apply(update)
        backoff.reset()
        if interactive:
            redraw()
        else:
            _print_changes(changes)

    async def follow(redraw: Callable[[], None]) -> None:
        connected_once = False
        while True:
            try:
                async with (
                    open_control_client(opts.socket_path) as client,
                    client.watch_jobs() as updates,
                ):
                    # The daemon sends its snapshot at once; a connection that stays
                    # silent (a socket caught mid-restart) is dropped and retried.
                    with trio.fail_after(SNAPSHOT_TIMEOUT):
                        first = await anext(updates)
                    take(first, redraw)
                    connected_once = True
                    async for update in updates:
                        take(update, redraw)
                raise ControlError("the daemon closed the stream")
            except trio.TooSlowError:
                error = ControlError("the daemon sent no snapshot")
                if not connected_once:
                    raise error from None
                state.problem = str(error)
                redraw()
            except ControlError as error:
                if not connected_once:
                    raise
                if not state.problem and not interactive:
                    note(f"{error}; reconnecting…")
                state.problem = str(error)
                redraw()
            delay = backoff.next_delay(trio.current_time()) or 10.0
            await trio.sleep(delay)

    async def main() -> None:
        if not interactive:
            await follow(lambda: None)
            return
        from rich.live import Live

        with Live(render(state), console=console, auto_refresh=False) as live:

            def redraw() -> None:
                state.now = time.time()
                live.update(render(state), refresh=True)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(_tick, redraw)
                await follow(redraw)

    run_trio(main)
    return 0


async def _tick(redraw: Callable[[], None]) -> None:
    import trio

    while True:
        await trio.sleep(1.0)
        redraw()


def _print_changes(changes: Iterable[tuple[JobView, bool]]) -> None:
    for view, removed in changes:
        print(job_line(view, removed=removed), flush=True)
