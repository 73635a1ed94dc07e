"""GitHub-Actions-style workflow files, as far as ``ephemerd run`` executes them locally.

Supported: ``run:`` steps in order with ``name``, ``env`` (workflow, job and step level),
``working-directory``, ``shell``, ``if:`` with ``always()``/``success()``/``failure()``/
``cancelled()`` (optionally negated with ``!``), ``continue-on-error``, ``timeout-minutes``,
``defaults.run``. Everything else a workflow may hold (``uses:``, ``services:``, ``matrix``,
other expressions) is reported as "not supported yet" with the place it was found, before
anything runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NoReturn, cast

import msgspec
import yaml

from ephemerd._errors import EphemerdError

__all__ = ["Step", "Workflow", "WorkflowError", "WorkflowJob", "load_workflow"]


class WorkflowError(EphemerdError):
    """The workflow file cannot be run; the message names the file and the place."""


class Step(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    run: str
    env: dict[str, str]
    shell: str
    working_directory: str
    condition: str  # "success", "always", "failure", "cancelled", optionally "!"-prefixed
    continue_on_error: bool
    timeout: float | None


class WorkflowJob(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    name: str
    runs_on: tuple[str, ...]
    env: dict[str, str]
    image: str
    steps: tuple[Step, ...]
    timeout: float | None


class Workflow(msgspec.Struct, frozen=True, kw_only=True):
    path: Path
    name: str
    env: dict[str, str]
    jobs: dict[str, WorkflowJob]

    def job(self, key: str | None) -> WorkflowJob:
        """The job named *key*, or the only job when *key* is ``None``."""
        if key is None:
            if len(self.jobs) != 1:
                names = ", ".join(sorted(self.jobs))
                raise WorkflowError(f"{self.path}: several jobs ({names}); choose one with --job")
            return next(iter(self.jobs.values()))
        try:
            return self.jobs[key]
        except KeyError:
            names = ", ".join(sorted(self.jobs))
            raise WorkflowError(f"{self.path}: no job {key!r} (jobs: {names})") from None


_CONDITION = re.compile(
    r"^\s*(?:\$\{\{\s*)?(!?)\s*(always|success|failure|cancelled)\(\)\s*(?:\}\})?\s*$"
)
_EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.S)


def load_workflow(path: Path) -> Workflow:
    """Parse and check *path*.

    Raises:
        WorkflowError: unreadable, not YAML, malformed, or using a feature not supported yet.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise WorkflowError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise WorkflowError(f"{path}: not valid YAML{where}") from None
    return _parse(path, document)


def _parse(path: Path, document: object) -> Workflow:
    top = _mapping(path, document, "the file")
    env = _env(path, top.get("env"), "env")
    raw_jobs = _mapping(path, top.get("jobs"), "jobs")
    if not raw_jobs:
        raise WorkflowError(f"{path}: jobs: no jobs defined")
    jobs = {str(key): _job(path, str(key), value) for key, value in raw_jobs.items()}
    return Workflow(path=path, name=str(top.get("name") or path.stem), env=env, jobs=jobs)


def _job(path: Path, key: str, value: object) -> WorkflowJob:
    where = f"jobs.{key}"
    job = _mapping(path, value, where)
    for unsupported in ("uses", "services"):
        if unsupported in job:
            _unsupported(path, f"{where}.{unsupported}", f"'{unsupported}:'")
    strategy = job.get("strategy")
    if isinstance(strategy, dict) and "matrix" in strategy:
        _unsupported(path, f"{where}.strategy.matrix", "'matrix'")
    runs_on = job.get("runs-on", ())
    labels = (runs_on,) if isinstance(runs_on, str) else tuple(str(x) for x in _list(runs_on))
    defaults = _mapping(
        path,
        _mapping(path, job.get("defaults", {}), f"{where}.defaults").get("run", {}),
        f"{where}.defaults.run",
    )
    steps = tuple(
        _step(path, f"{where}.steps[{i}]", raw, defaults)
        for i, raw in enumerate(_list(job.get("steps")))
    )
    if not steps:
        raise WorkflowError(f"{path}: {where}.steps: no steps")
    return WorkflowJob(
        key=key,
        name=str(job.get("name") or key),
        runs_on=labels,
        env=_env(path, job.get("env"), f"{where}.env"),
        image=_image(path, job.get("container"), f"{where}.container"),
        steps=steps,
        timeout=_minutes(path, job.get("timeout-minutes"), f"{where}.timeout-minutes"),
    )


def _step(path: Path, where: str, value: object, defaults: dict[str, object]) -> Step:
    step = _mapping(path, value, where)
    if "uses" in step:
        _unsupported(path, f"{where}.uses", "'uses:' steps")
    run = step.get("run")
    if not isinstance(run, str) or not run.strip():
        raise WorkflowError(f"{path}: {where}: a step needs a 'run:' script")
    for key in ("name", "shell", "working-directory"):
        if key in step and _EXPRESSION.search(str(step[key])):
            _unsupported(path, f"{where}.{key}", "expressions")
    if _EXPRESSION.search(run):
        _unsupported(path, f"{where}.run", "'${{ }}' expressions in scripts")
    continue_on_error = step.get("continue-on-error", False)
    if not isinstance(continue_on_error, bool):
        _unsupported(path, f"{where}.continue-on-error", "expressions")
    first_line = run.strip().splitlines()[0]
    return Step(
        name=str(step.get("name") or f"Run {first_line}"),
        run=run,
        env=_env(path, step.get("env"), f"{where}.env"),
        shell=str(step.get("shell") or defaults.get("shell") or ""),
        working_directory=str(
            step.get("working-directory") or defaults.get("working-directory") or ""
        ),
        condition=_condition(path, step.get("if"), f"{where}.if"),
        continue_on_error=continue_on_error,
        timeout=_minutes(path, step.get("timeout-minutes"), f"{where}.timeout-minutes"),
    )


def _condition(path: Path, value: object, where: str) -> str:
    if value is None:
        return "success"
    match = _CONDITION.match(str(value))
    if match is None:
        _unsupported(path, where, f"the condition {value!r}")
    negated, function = match.groups()
    return f"{negated}{function}"


def _image(path: Path, value: object, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        image = cast(dict[str, object], value).get("image")
        if isinstance(image, str):
            return image
    raise WorkflowError(f"{path}: {where}: expected an image name or a mapping with 'image'")


def _minutes(path: Path, value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise WorkflowError(f"{path}: {where}: expected a positive number of minutes")
    return float(value) * 60


def _env(path: Path, value: object, where: str) -> dict[str, str]:
    env = _mapping(path, value if value is not None else {}, where)
    result: dict[str, str] = {}
    for key, item in env.items():
        text = "" if item is None else str(item).lower() if isinstance(item, bool) else str(item)
        if _EXPRESSION.search(text):
            _unsupported(path, f"{where}.{key}", "'${{ }}' expressions")
        result[str(key)] = text
    return result


def _mapping(path: Path, value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise WorkflowError(f"{path}: {where}: expected a mapping")
    return cast(dict[str, object], value)


def _list(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, list):
        return cast(list[object], value)
    return [value]


def _unsupported(path: Path, where: str, what: str) -> NoReturn:
    raise WorkflowError(f"{path}: {where}: {what} not supported yet by 'ephemerd run'")
