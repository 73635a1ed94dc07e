"""The cyclopts application: commands, global options, exit codes.

Each command imports what it needs inside its body (trio, grpclib, rich, the config
loader), so ``ephemerd status`` and ``ephemerd version`` start fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from cyclopts import App, Parameter

from ephemerd import __version__

from ._options import GlobalOptions, resolve_data_dir
from ._status import show_status

__all__ = ["app"]

Opts = Annotated[GlobalOptions, Parameter(parse=False)]
Json = Annotated[bool, Parameter(help="Print JSON (sorted keys).", negative=())]

app = App(
    name="ephemerd",
    help="Ephemeral, isolated CI runners for several forges on one Linux host.",
    version=__version__,
    version_flags=[],
)
jobs_app = App(name="jobs", help="List, inspect, kill and follow jobs.")
config_app = App(name="config", help="Inspect the configuration.")
images_app = App(name="images", help="Pull, import, list and remove sandbox images.")
gitlab_app = App(
    name="gitlab-executor",
    help="The programs gitlab-runner's custom executor calls (config, prepare, run, cleanup).",
)
app.command(jobs_app)
app.command(config_app)
app.command(images_app)
app.command(gitlab_app)
Instance = Annotated[
    str, Parameter(help="The [gitlab] instance (default: the only one the daemon has).")
]


@app.meta.default
def _launcher(
    *tokens: Annotated[str, Parameter(show=False, allow_leading_hyphen=True)],
    data_dir: Annotated[
        Path | None,
        Parameter(help="State directory (default: $EPHEMERD_DATA_DIR, else /var/lib/ephemerd)."),
    ] = None,
    config: Annotated[
        Path | None,
        Parameter(name=["--config", "-c"], help="Config file (default: DATA_DIR/config.toml)."),
    ] = None,
) -> int:
    command, bound, ignored = app.parse_args(tokens)
    extra: dict[str, object] = {}
    if "opts" in ignored:  # the commands' one unparsed parameter
        extra["opts"] = GlobalOptions(data_dir=resolve_data_dir(data_dir), config=config)
    result = command(*bound.args, **bound.kwargs, **extra)
    return result if isinstance(result, int) else 0


@app.command
def serve(
    *,
    log_format: Annotated[
        Literal["text", "json"] | None, Parameter(help="Overrides [log] format (default text).")
    ] = None,
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"] | None,
        Parameter(help="Overrides [log] level (default info)."),
    ] = None,
    opts: Opts,
) -> int:
    """Run the daemon in the foreground (logs go to stderr)."""
    from ephemerd._errors import EphemerdError

    try:
        from ephemerd.daemon import run_daemon
    except ImportError as error:
        raise EphemerdError(f"this build has no daemon ({error})") from None
    return run_daemon(opts.config, opts.data_dir, log_format, log_level)


@app.command
def status(*, json: Json = False, opts: Opts) -> int:
    """Show the daemon's state, capacity and providers."""
    return show_status(opts, as_json=json)


@jobs_app.default
def jobs(
    ref: Annotated[
        str | None, Parameter(help="A job: INSTANCE/ID, or ID when only one instance has it.")
    ] = None,
    /,
    *,
    json: Json = False,
    watch: Annotated[
        bool, Parameter(help="Live view of every job until Ctrl-C.", negative=())
    ] = False,
    opts: Opts,
) -> int:
    """List jobs, or show one job."""
    if watch:
        if ref is not None or json:
            from ephemerd._errors import ConfigError

            raise ConfigError("--watch takes no job id and no --json")
        from ._tui import watch_jobs

        return watch_jobs(opts)
    from ._jobs import list_jobs, show_job

    if ref is None:
        return list_jobs(opts, as_json=json)
    return show_job(opts, ref, as_json=json)


@jobs_app.command
def kill(ref: str, /, *, opts: Opts) -> int:
    """Cancel a job; its sandbox is destroyed and its runner released."""
    from ._jobs import kill_job

    return kill_job(opts, ref)


@jobs_app.command
def logs(
    ref: str,
    /,
    *,
    follow: Annotated[
        bool, Parameter(name=["--follow", "-f"], help="Until the job ends.", negative=())
    ] = False,
    opts: Opts,
) -> int:
    """Print a job's log; with -f, keep following until the job finishes."""
    from ._jobs import job_logs

    return job_logs(opts, ref, follow=follow)


@app.command
def drain(
    *,
    wait: Annotated[
        bool, Parameter(help="Cordon and wait for running jobs; no signal.", negative=())
    ] = False,
    timeout: Annotated[str, Parameter(help="With --wait: give up after this long.")] = "45m",
    opts: Opts,
) -> int:
    """Stop taking jobs and let the running ones finish (SIGTERM to the daemon)."""
    from . import _drain

    if not wait:
        return _drain.drain(opts)
    from ephemerd._errors import ConfigError
    from ephemerd.config import parse_duration

    try:
        seconds = float(parse_duration(timeout))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"--timeout: {error}") from None
    return _drain.drain_and_wait(opts, timeout=seconds)


@app.command
def uncordon(*, opts: Opts) -> int:
    """Claim new jobs again after a cordon (drain --wait)."""
    from ._drain import uncordon as run

    return run(opts)


@config_app.command
def check(*, opts: Opts) -> int:
    """Validate the configuration and print the resolved providers; starts nothing."""
    from ephemerd.config import describe, load_config

    config = load_config(opts.config, data_dir=opts.data_dir)
    claim_models: dict[str, str] = {}
    for provider in config.providers:
        if provider.kind in ("forgejo", "gitea"):
            from ephemerd.forges import forgejo, gitea

            forge = forgejo if provider.kind == "forgejo" else gitea
            claim_models[provider.name] = forge.describe_claim_model(provider)
    print(describe(config, claim_models=claim_models))
    return 0


@app.command
def run(
    workflow: Annotated[
        Path | None, Parameter(help="Workflow file (default: the only one in .github/workflows).")
    ] = None,
    /,
    *,
    job: Annotated[str | None, Parameter(help="The job to run, when the file has several.")] = None,
    image: Annotated[
        str | None, Parameter(help="Sandbox image (default: the job's container, else busybox).")
    ] = None,
    network: Annotated[
        Literal["default", "none"], Parameter(help="Egress to the internet, or none.")
    ] = "default",
    opts: Opts,
) -> int:
    """Run a workflow's job locally in one fresh sandbox; the exit code is the job's result."""
    from ._run import run_workflow

    return run_workflow(opts, workflow, job=job, image=image, network=network)


@images_app.command(name="pull")
def images_pull(reference: str, /, *, opts: Opts) -> int:
    """Pull an image from its registry."""
    from ._images import images_pull as pull

    return pull(opts, reference)


@images_app.command(name="import")
def images_import(
    archive: Path,
    /,
    *,
    name: Annotated[str | None, Parameter(help="Record it under this name.")] = None,
    opts: Opts,
) -> int:
    """Import an OCI image layout or `docker save` tar archive."""
    from ._images import images_import as load

    return load(opts, archive, name)


@images_app.command(name="list")
def images_list(*, opts: Opts) -> int:
    """List the images ephemerd manages."""
    from ._images import images_list as show

    return show(opts)


@images_app.command(name="rm")
def images_remove(references: list[str], /, *, opts: Opts) -> int:
    """Remove images."""
    from ._images import images_remove as remove

    return remove(opts, references)


@gitlab_app.command(name="config")
def gitlab_config(
    *,
    builds_dir: Annotated[str, Parameter(help="Where jobs check out, in the sandbox.")] = "/builds",
    cache_dir: Annotated[str, Parameter(help="The local cache, in the sandbox.")] = "/cache",
) -> int:
    """Print the executor's configuration JSON (builds_dir, cache_dir, driver...)."""
    from ._gitlab import executor_config

    return executor_config(builds_dir=builds_dir, cache_dir=cache_dir)


@gitlab_app.command(name="install")
def gitlab_install(
    *,
    instance: Instance = "",
    prepare_timeout: Annotated[
        int, Parameter(help="Seconds gitlab-runner allows prepare (a slot + image pull).")
    ] = 3600,
    verify: Annotated[bool, Parameter(help="Check the token with GitLab first.")] = True,
    opts: Opts,
) -> int:
    """Print gitlab-runner's [[runners]] block pointing its custom executor at ephemerd."""
    from ._gitlab import executor_install

    return executor_install(opts, instance=instance, prepare_timeout=prepare_timeout, verify=verify)


@gitlab_app.command(name="prepare")
def gitlab_prepare(*, instance: Instance = "", opts: Opts) -> int:
    """Admit the job (CUSTOM_ENV_CI_JOB_ID) and start its sandbox; return once it runs."""
    from ._gitlab import executor_prepare

    return executor_prepare(opts, instance=instance)


@gitlab_app.command(name="run")
def gitlab_run(script: Path, stage: str, /, *, instance: Instance = "", opts: Opts) -> int:
    """Run one sub-stage's script inside the job's sandbox."""
    from ._gitlab import executor_run

    return executor_run(opts, script, stage, instance=instance)


@gitlab_app.command(name="cleanup")
def gitlab_cleanup(*, instance: Instance = "", opts: Opts) -> int:
    """Destroy the job's sandbox."""
    from ._gitlab import executor_cleanup

    return executor_cleanup(opts, instance=instance)


@app.command
def version() -> int:
    """Print the version."""
    print(f"ephemerd {__version__}")
    return 0
