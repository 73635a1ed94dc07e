"""Which claim model and which discovery an instance uses, from server version and config.

- ``HANDLE`` (Forgejo >= 15 with an API token): waiting jobs are listed over REST (listing
  claims nothing); a claim creates an ephemeral runner over REST, and the sandbox runs
  ``forgejo-runner one-job --handle <job attempt>``, so exactly that job is fetched by
  exactly that runner.
- ``REGISTERED`` (Gitea, older Forgejo): ephemerd registers an ephemeral runner itself
  (Register with ``ephemeral = true``) and hands the sandbox a pre-seeded ``.runner`` file;
  the runner fetches one job and the server deletes it afterwards. Jobs are found by the
  REST job list where the server has one (``REST_LIST``), else a ``WARM_POOL`` of idle
  ephemeral runners is kept, each in its own sandbox.
"""

from __future__ import annotations

import enum
import re

from ._options import ActionsOptions, Flavour

__all__ = ["ClaimModel", "Discovery", "choose_model", "describe_claim_model", "server_major"]


class ClaimModel(enum.Enum):
    HANDLE = "handle"
    REGISTERED = "registered"


class Discovery(enum.Enum):
    REST_LIST = "rest-list"
    WARM_POOL = "warm-pool"


def server_major(version: str) -> int | None:
    """The major version of a version string (``15.0.1+gitea-1.22.0`` -> 15)."""
    found = re.match(r"v?(\d+)\.", version.strip())
    return int(found.group(1)) if found else None


def choose_model(flavour: Flavour, options: ActionsOptions, version: str) -> ClaimModel:
    """The claim model for a server reporting *version*."""
    major = server_major(version)
    if (
        options.api_token
        and flavour.handle_from_major is not None
        and major is not None
        and major >= flavour.handle_from_major
    ):
        return ClaimModel.HANDLE
    return ClaimModel.REGISTERED


def describe_claim_model(flavour: Flavour, options: ActionsOptions) -> str:
    """One line for ``ephemerd config check``: the model the config allows, before any I/O."""
    pool = f"else a warm pool of {options.pool_size} idle ephemeral runner(s)"
    registered = (
        "ephemerd registers an ephemeral runner per job (Register, ephemeral) and seeds its "
        f".runner file; sandbox runs `{' '.join(flavour.runner_argv[:2])}`; discovery: "
    )
    if not options.api_token:
        return registered + "warm pool (no api_token: no job list, runners not deleted early)"
    text = registered + f"REST job list where the server has it, {pool}"
    if flavour.handle_from_major is not None:
        return (
            f"server >= {flavour.handle_from_major}: REST job list, an ephemeral runner "
            "created per job, `forgejo-runner one-job --handle`; older servers: " + text
        )
    return text
