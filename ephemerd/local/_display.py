"""The live display of ``ephemerd run``: step headers, streamed output, a closing summary."""

from __future__ import annotations

from rich.console import Console
from rich.status import Status
from rich.text import Text

from ._runner import JobResult, StepOutcome, StepResult
from ._workflow import Step, WorkflowJob

__all__ = ["ConsoleReporter"]

_MARKS = {
    StepOutcome.SUCCESS: ("✓", "green"),
    StepOutcome.FAILURE: ("✗", "red"),
    StepOutcome.SKIPPED: ("-", "dim"),
}


class ConsoleReporter:
    """Prints each step's output as it comes, under a spinner naming the running step.

    On a terminal the spinner shows the step and its elapsed time; elsewhere the output is
    plain lines, fit for a log.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._status: Status | None = None
        self._partial: dict[str, bytes] = {}

    def job_started(self, job: WorkflowJob, image: str) -> None:
        self._console.print(
            Text.assemble(("Job ", "bold"), (job.name, "bold cyan"), (f"  image {image}", "dim"))
        )

    def step_started(self, index: int, step: Step) -> None:
        self._console.print(Text.assemble(("▶ ", "cyan"), (step.name, "bold")))
        if self._console.is_terminal:
            self._status = self._console.status(f"{step.name}…")
            self._status.start()

    def step_output(self, index: int, stream: str, chunk: bytes) -> None:
        data = self._partial.pop(stream, b"") + chunk
        *lines, rest = data.split(b"\n")
        if rest:
            self._partial[stream] = rest
        for line in lines:
            self._line(stream, line)

    def step_finished(self, index: int, result: StepResult) -> None:
        for stream, rest in sorted(self._partial.items()):
            self._line(stream, rest)
        self._partial.clear()
        if self._status is not None:
            self._status.stop()
            self._status = None
        mark, style = _MARKS[result.outcome]
        detail = "skipped" if result.outcome is StepOutcome.SKIPPED else f"{result.seconds:.2f}s"
        if result.outcome is StepOutcome.FAILURE:
            code = "timed out" if result.exit_code is None else f"exit {result.exit_code}"
            detail = f"{code}, {detail}" + (", continued" if result.continued else "")
        self._console.print(
            Text.assemble((f"{mark} ", style), (result.name, style), (f"  ({detail})", "dim"))
        )

    def job_finished(self, result: JobResult) -> None:
        verdict = ("succeeded", "bold green") if result.succeeded else ("failed", "bold red")
        self._console.print(
            Text.assemble(("Job ", "bold"), verdict, (f" in {result.seconds:.2f}s", "dim"))
        )

    def _line(self, stream: str, line: bytes) -> None:
        text = Text("  │ ", style="dim")
        text.append(line.decode("utf-8", "replace"), style="red" if stream == "stderr" else "")
        self._console.print(text, highlight=False, soft_wrap=True)
