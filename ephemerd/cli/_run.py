"""``ephemerd run``: a workflow file in one fresh sandbox, with no forge and no daemon."""

from __future__ import annotations

import subprocess
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ephemerd._errors import EphemerdError
from ephemerd._lock import hold_data_dir

from ._options import GlobalOptions, run_trio

if TYPE_CHECKING:
    from ephemerd.local import Workflow, WorkflowJob

__all__ = ["run_workflow"]

_WORKFLOW_DIRS = (".forgejo/workflows", ".gitea/workflows", ".github/workflows")
# Its own job network, so a local run works beside a daemon on the same host (a daemon
# keeps "ephemerd" and 10.88.0.0/16 unless configured otherwise).
RUN_NETWORK_NAME = "ephemerdrun"
RUN_SUBNET = "10.89.0.0/24"


def run_workflow(
    opts: GlobalOptions,
    workflow: Path | None,
    *,
    job: str | None,
    image: str | None,
    network: str,
) -> int:
    """Run *workflow*'s job; the exit code is 0 when the job succeeded, 1 otherwise."""
    from ephemerd._logging import setup_logging
    from ephemerd.local import load_workflow

    setup_logging(level="warning")
    path = workflow or _find_workflow(Path.cwd())
    parsed = load_workflow(path)
    selected = parsed.job(job)
    repository = _repository_root(path)
    opts.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with hold_data_dir(opts.data_dir):
        run = partial(_run, image=image, network=network)
        result = run_trio(run, opts, parsed, selected, repository)
    return 0 if result else 1


async def _run(
    opts: GlobalOptions,
    workflow: Workflow,
    job: WorkflowJob,
    repository: Path,
    *,
    image: str | None,
    network: str,
) -> bool:
    from rich.console import Console

    from ephemerd.local import ConsoleReporter, run_job
    from ephemerd.sandbox import HOST_IMAGE, ensure_host_image, open_sandbox_stack

    console = Console(highlight=False)
    scratch = opts.data_dir / "run"
    scratch.mkdir(exist_ok=True, mode=0o700)
    async with open_sandbox_stack(
        data_dir=opts.data_dir, network=network, network_name=RUN_NETWORK_NAME, subnet=RUN_SUBNET
    ) as stack:
        chosen = image or job.image or HOST_IMAGE
        if stack.images.normalize(chosen) == stack.images.normalize(HOST_IMAGE):
            await ensure_host_image(stack.images)
        else:
            with console.status(f"pulling {chosen}…"):
                await stack.images.ensure(chosen)
        result = await run_job(
            workflow,
            job,
            backend=stack.backend,
            image=chosen,
            repository=repository,
            scratch_dir=scratch,
            reporter=ConsoleReporter(console),
            network=network,
        )
    return result.succeeded


def _find_workflow(directory: Path) -> Path:
    found: list[Path] = []
    for sub in _WORKFLOW_DIRS:
        folder = directory / sub
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise EphemerdError(
            f"no workflow file given and none found in {directory} ({', '.join(_WORKFLOW_DIRS)})"
        )
    names = ", ".join(str(p.relative_to(directory)) for p in found)
    raise EphemerdError(f"several workflow files ({names}); name one")


def _repository_root(workflow: Path) -> Path:
    """The repository *workflow* belongs to: the git work tree, else the directory holding
    its ``.github/workflows`` (or Forgejo's, Gitea's), else the current directory."""
    folder = workflow.resolve().parent
    try:
        top = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        top = ""
    if top:
        return Path(top)
    if folder.name == "workflows" and folder.parent.name in (".github", ".gitea", ".forgejo"):
        return folder.parent.parent
    return Path.cwd()
