"""``ephemerd gitlab-executor config|prepare|run|cleanup``: gitlab-runner's custom executor.

gitlab-runner calls these four programs for every job (``[runners.custom]`` in its
``config.toml``) with the job's variables in the environment as ``CUSTOM_ENV_<KEY>``.
Each talks to the running daemon over its control socket (0600): the variables and the
job payload travel there, never on argv and never into a log.

Exit codes follow the executor contract: 0 when the stage did its work;
``$BUILD_FAILURE_EXIT_CODE`` when a ``run`` stage's script failed (its own exit code is
also written to ``$BUILD_EXIT_CODE_FILE`` when that is set); ``$SYSTEM_FAILURE_EXIT_CODE``
for anything ephemerd could not do: no daemon, a cordoned or draining daemon, an image
that cannot be pulled, a sandbox that died, a job killed, a stage cancelled by
gitlab-runner (SIGTERM or SIGINT). Every failure is one line on stderr.

gitlab-runner starts a new process for every stage, about a dozen per job, so the
stages use the control package's blocking quick calls (no trio, asyncio, grpclib or
msgspec to import) and ``cli._quick`` routes their exact command lines past cyclopts;
the cyclopts commands call the same functions. A signal stops a stage by closing its
control connection, and the daemon cancels the call: the script dies in the sandbox.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from ephemerd import __version__

from ._options import GlobalOptions

__all__ = [
    "ENV_PREFIX",
    "executor_cleanup",
    "executor_config",
    "executor_install",
    "executor_prepare",
    "executor_run",
    "job_variables",
]

ENV_PREFIX = "CUSTOM_ENV_"
_DEFAULT_BUILD_FAILURE = 1
_DEFAULT_SYSTEM_FAILURE = 2


class _Failure(Exception):
    """A stage failed; the message is the line for stderr."""

    def __init__(self, message: str, *, build_code: int | None = None) -> None:
        super().__init__(message)
        self.build_code = build_code


def job_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The job's variables: every ``CUSTOM_ENV_<KEY>`` as ``KEY``."""
    n = len(ENV_PREFIX)
    return {key[n:]: value for key, value in env.items() if key.startswith(ENV_PREFIX)}


def _code(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, ""))
    except ValueError:
        return default


def _system_failure(stage: str, message: str) -> int:
    print(f"ephemerd gitlab-executor {stage}: {' '.join(message.split())}", file=sys.stderr)
    sys.stderr.flush()
    return _code("SYSTEM_FAILURE_EXIT_CODE", _DEFAULT_SYSTEM_FAILURE)


def _job_id() -> str:
    job_id = os.environ.get(ENV_PREFIX + "CI_JOB_ID", "").strip()
    if not job_id:
        raise _Failure("CUSTOM_ENV_CI_JOB_ID is not set: this is run by gitlab-runner's executor")
    return job_id


class _Stopped(BaseException):
    """gitlab-runner signalled the stage to stop; a BaseException so nothing swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)


def _run_stage(stage: str, body: Callable[[], int]) -> int:
    """Run *body*; SIGTERM/SIGINT stop it. Map every failure to the contract.

    The signal handler raises ``_Stopped`` wherever *body* is, a blocking read included;
    unwinding closes the control connection, and the daemon cancels the call (it kills
    the stage's script, or the job a ``prepare`` admitted).
    """
    from ephemerd._errors import EphemerdError

    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        del frame
        if not stopping:  # a second signal while unwinding changes nothing
            stopping.append(signum)
            raise _Stopped(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            return body()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    except _Stopped as stopped:
        return _system_failure(stage, f"cancelled by gitlab-runner ({stopped})")
    except _Failure as error:
        if error.build_code is not None:
            return _build_failure(error.build_code)
        return _system_failure(stage, str(error))
    except EphemerdError as error:
        return _system_failure(stage, str(error))
    except Exception as error:  # a bug: still one line and the contract's code
        return _system_failure(stage, f"internal error: {type(error).__name__}: {error}")


def _build_failure(code: int) -> int:
    path = os.environ.get("BUILD_EXIT_CODE_FILE", "")
    if path:
        try:
            Path(path).write_text(f"{code}\n")
        except OSError as error:
            print(f"ephemerd gitlab-executor run: cannot write {path}: {error}", file=sys.stderr)
    return _code("BUILD_FAILURE_EXIT_CODE", _DEFAULT_BUILD_FAILURE)


def _hostname() -> str:
    return os.uname().nodename  # what socket.gethostname() answers, without importing socket


# -- the four stages ----------------------------------------------------------------


def executor_config(*, builds_dir: str, cache_dir: str) -> int:
    """Print the config stage's JSON; needs no daemon."""
    import json

    document = {
        "builds_dir": builds_dir,
        "cache_dir": cache_dir,
        "builds_dir_is_shared": False,
        "hostname": _hostname(),
        "driver": {"name": "ephemerd", "version": __version__},
        "shell": "bash",
        "job_env": {"EPHEMERD": "1"},
    }
    print(json.dumps(document, sort_keys=True))
    return 0


def executor_prepare(opts: GlobalOptions, *, instance: str = "") -> int:
    """Ask the daemon to admit the job and start its sandbox; return once it runs."""
    from ephemerd.control import executor_prepare as prepare

    def body() -> int:
        job_id = _job_id()
        payload = b""
        response_file = os.environ.get("JOB_RESPONSE_FILE", "")
        if response_file:
            try:
                payload = Path(response_file).read_bytes()
            except OSError as error:
                raise _Failure(f"cannot read JOB_RESPONSE_FILE: {error.strerror}") from None
        job = prepare(
            opts.socket_path,
            job_id,
            instance=instance,
            variables=job_variables(os.environ),
            job_response=payload,
        )
        print(
            f"Running on ephemerd {__version__}: sandbox {job.sandbox} "
            f"(image {job.image}) on {_hostname()}",
            flush=True,
        )
        return 0

    return _run_stage("prepare", body)


def executor_run(opts: GlobalOptions, script: Path, stage: str, *, instance: str = "") -> int:
    """Run one sub-stage's script in the job's sandbox, streaming its output as it comes."""
    from ephemerd.control import executor_run as run

    def body() -> int:
        job_id = _job_id()
        try:
            content = Path(script).read_bytes()
        except OSError as error:
            raise _Failure(f"cannot read the script {script}: {error.strerror}") from None
        out, err = sys.stdout.buffer, sys.stderr.buffer

        def on_output(stream: str, chunk: bytes) -> None:
            sink = err if stream == "stderr" else out
            sink.write(chunk)
            sink.flush()

        code = run(
            opts.socket_path,
            job_id,
            instance=instance,
            script=content,
            stage=stage,
            on_output=on_output,
        )
        if code != 0:
            raise _Failure(f"{stage} failed with exit code {code}", build_code=code)
        return 0

    return _run_stage("run", body)


def executor_cleanup(opts: GlobalOptions, *, instance: str = "") -> int:
    """End the job; return once its sandbox is gone. A second cleanup is no error."""
    from ephemerd.control import executor_cleanup as cleanup

    def body() -> int:
        cleanup(opts.socket_path, _job_id(), instance=instance)
        return 0

    return _run_stage("cleanup", body)


def executor_install(
    opts: GlobalOptions, *, instance: str = "", prepare_timeout: int, verify: bool = True
) -> int:
    """Print gitlab-runner's ``[[runners]]`` block for a ``[gitlab]`` section of the config.

    The token is checked with GitLab first (a revoked one is an error, not a block that
    never gets work). The block holds the token: write it to a 0600 file.

    Raises:
        ConfigError: no such ``[gitlab]`` section, or several and no *instance*.
        ForgeAuthError: GitLab refused the token.
    """
    import shutil

    import trio

    from ephemerd._errors import ConfigError
    from ephemerd._http import open_http_client
    from ephemerd.config import GitLabConfig, load_config
    from ephemerd.forges.gitlab import load_system_id, render_runner_block, verify_runner

    config = load_config(opts.config, data_dir=opts.data_dir)
    sections = [p for p in config.providers if isinstance(p, GitLabConfig)]
    chosen = [p for p in sections if p.name == instance] if instance else sections
    if len(chosen) != 1:
        names = ", ".join(p.name for p in sections) or "none"
        which = f"no [gitlab] section named {instance!r}" if instance else "pass --instance"
        raise ConfigError(f"{which} (gitlab sections: {names})")
    section = chosen[0]
    token = section.token.reveal()
    runner_id: int | None = None
    if verify:

        async def check() -> int | None:
            system_id = load_system_id(opts.data_dir / f"gitlab-{section.name}.system_id")
            async with open_http_client() as client:
                identity = await verify_runner(
                    client, instance_url=section.instance_url, token=token, system_id=system_id
                )
            return identity.id

        runner_id = trio.run(check)
    executable = shutil.which("ephemerd") or str(Path(sys.argv[0]).resolve())
    print(
        render_runner_block(
            name=f"ephemerd-{section.name}",
            url=section.instance_url,
            token=token,
            ephemerd_executable=executable,
            data_dir=opts.data_dir.resolve(),
            config_path=opts.config.resolve() if opts.config else None,
            prepare_timeout=prepare_timeout,
            runner_id=runner_id,
            instance=section.name if len(sections) > 1 else "",
        ),
        end="",
    )
    return 0
