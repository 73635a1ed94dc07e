"""The workflow payload a Woodpecker server hands an agent, and how a step becomes an exec.

``Workflow.payload`` is the JSON of the server's backend configuration: stages run one
after the other, the steps of one stage run side by side. Decoding is lenient (unknown
keys are skipped) so a newer server's extra fields do no harm.

Restrictions, each tested: every step runs in the workflow's one sandbox (the image of its
first ``commands`` step), so a step naming another image runs in that image too; the
clone step runs as a ``git`` script (the image needs ``git``); a plugin step without an
``entrypoint`` cannot run (its image's default command is not available) and fails.
"""

from __future__ import annotations

import base64
import shlex

import msgspec

from ephemerd._errors import ForgeProtocolError

__all__ = [
    "FAILURE_IGNORE",
    "Secret",
    "Stage",
    "Step",
    "StepCommand",
    "WorkflowConfig",
    "decode_config",
    "step_command",
    "workflow_image",
]

FAILURE_IGNORE = "ignore"

# Runs the step script the way Woodpecker's own backends do (CI_SCRIPT, base64), after
# creating and entering the working directory, which the one shared sandbox may not have.
# stderr joins stdout, as in a container's log stream, so lines keep the order written.
_RUN_SCRIPT = 'mkdir -p "$1" && cd "$1" && echo "$CI_SCRIPT" | base64 -d | /bin/sh -e 2>&1'

_SETUP = """
if [ -n "$CI_NETRC_MACHINE" ]; then
printf 'machine %s\\nlogin %s\\npassword %s\\n' \\
  "$CI_NETRC_MACHINE" "$CI_NETRC_USERNAME" "$CI_NETRC_PASSWORD" > "$HOME/.netrc"
chmod 0600 "$HOME/.netrc"
fi
unset CI_NETRC_USERNAME
unset CI_NETRC_PASSWORD
unset CI_SCRIPT
"""

_CLONE = [
    'git init -q "$CI_WORKSPACE"',
    'cd "$CI_WORKSPACE"',
    'git remote add origin "$CI_REPO_CLONE_URL"',
    'git fetch -q --depth=1 origin "${CI_COMMIT_SHA:-$CI_COMMIT_REF}"',
    "git checkout -q FETCH_HEAD",
]


class Secret(msgspec.Struct, frozen=True, kw_only=True):
    name: str = ""
    value: str = ""

    def __repr__(self) -> str:
        return f"Secret(name={self.name!r}, value=<redacted>)"


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One step, with the keys an agent acts on."""

    name: str = ""
    uuid: str = ""
    type: str = ""
    image: str = ""
    detach: bool = False
    working_dir: str = ""
    workspace_base: str = ""
    environment: dict[str, str] = msgspec.field(default_factory=dict[str, str])
    secret_mapping: dict[str, str] = msgspec.field(default_factory=dict[str, str])
    entrypoint: list[str] = msgspec.field(default_factory=list[str])
    commands: list[str] = msgspec.field(default_factory=list[str])
    on_failure: bool = False
    on_success: bool = False
    failure: str = ""

    def __repr__(self) -> str:  # the environment may hold secrets
        return f"Step(name={self.name!r}, uuid={self.uuid!r}, type={self.type!r})"


class Stage(msgspec.Struct, frozen=True, kw_only=True):
    steps: list[Step] = msgspec.field(default_factory=list[Step])


class WorkflowConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The decoded payload. ``secrets`` (older servers) and ``secret_values`` are masked."""

    pipeline: list[Stage] = msgspec.field(default_factory=list[Stage])
    secrets: list[Secret] = msgspec.field(default_factory=list[Secret])
    secret_values: list[str] = msgspec.field(default_factory=list[str])

    def __repr__(self) -> str:
        return f"WorkflowConfig(stages={len(self.pipeline)})"

    @property
    def steps(self) -> list[Step]:
        return [step for stage in self.pipeline for step in stage.steps]

    def masked_values(self) -> tuple[str, ...]:
        """Every secret value that must not appear in a log line, longest first."""
        values = {s.value for s in self.secrets} | set(self.secret_values)
        for step in self.steps:
            values.update(step.secret_mapping.values())
        return tuple(sorted((v for v in values if v), key=len, reverse=True))

    @property
    def repo(self) -> str:
        steps = self.steps
        return steps[0].environment.get("CI_REPO", "") if steps else ""

    @property
    def pipeline_number(self) -> str:
        steps = self.steps
        return steps[0].environment.get("CI_PIPELINE_NUMBER", "") if steps else ""


_decoder = msgspec.json.Decoder(WorkflowConfig)


def decode_config(payload: bytes) -> WorkflowConfig:
    """Decode a workflow payload.

    Raises:
        ForgeProtocolError: the payload is not a workflow configuration, or has no steps.
    """
    try:
        config = _decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise ForgeProtocolError(f"woodpecker workflow payload does not parse: {exc}") from None
    if not config.steps:
        raise ForgeProtocolError("woodpecker workflow payload has no steps")
    return config


def workflow_image(config: WorkflowConfig) -> str:
    """The image of the workflow's sandbox: its first commands step's, else any step's."""
    for step in config.steps:
        if step.commands and step.type != "clone" and step.image:
            return step.image
    for step in config.steps:
        if step.image and step.type != "clone":
            return step.image
    return ""


class StepCommand(msgspec.Struct, frozen=True, kw_only=True):
    """What to exec for one step: argv, environment and working directory."""

    argv: tuple[str, ...]
    env: dict[str, str]
    workdir: str | None

    def __repr__(self) -> str:
        return f"StepCommand(argv={self.argv!r}, env=<{len(self.env)} vars>)"


def _script(commands: list[str]) -> str:
    parts = [_SETUP]
    for command in commands:
        parts.append(f"\necho + {shlex.quote(command)}\n{command}\n")
    return "".join(parts)


def step_command(step: Step, *, extra_env: dict[str, str]) -> StepCommand:
    """How *step* runs inside the workflow's sandbox.

    A step with ``entrypoint`` runs it as argv (its commands, if any, are in
    ``CI_SCRIPT``, as Woodpecker's backends hand them to a custom entrypoint); a commands
    step runs its script under ``/bin/sh -e``; the clone step runs a ``git`` script.

    Raises:
        ForgeProtocolError: a step with nothing to run (a plugin step without entrypoint).
    """
    env = {**extra_env, **step.environment, **step.secret_mapping}
    commands = list(step.commands)
    if step.type == "clone" and not commands and not step.entrypoint:
        commands = _CLONE
    workdir = step.working_dir or env.get("CI_WORKSPACE", "") or "/woodpecker"
    if commands:
        env["CI_SCRIPT"] = base64.b64encode(_script(commands).encode()).decode()
        env["SHELL"] = "/bin/sh"
    if step.entrypoint:
        return StepCommand(argv=tuple(step.entrypoint), env=env, workdir=step.working_dir or None)
    if commands:
        argv = ("/bin/sh", "-c", _RUN_SCRIPT, "sh", workdir)
        return StepCommand(argv=argv, env=env, workdir=None)
    raise ForgeProtocolError(
        f"step {step.name!r} has neither commands nor an entrypoint; plugin steps that rely "
        "on their image's default command are not supported"
    )
