"""Gitea Actions: ephemerd registers an ephemeral runner per job (Register, ephemeral) and
hands the sandbox a pre-seeded ``.runner`` file; the sandbox runs ``act_runner daemon --once``.

Everything but the flavour below lives in ``ephemerd.forges._actions``, shared with Forgejo.
"""

from ephemerd.forges import _actions
from ephemerd.forges._actions import ActionsOptions, ActionsProvider

DEFAULT_IMAGE = "docker.io/gitea/act_runner:latest"
RUNNER_ARGV = ("act_runner", "daemon", "--once", "--config", _actions.CONFIG_PATH)
"""The runner inside the sandbox, pre-seeded with a ``.runner`` file (``--once``: one job)."""

FLAVOUR = _actions.Flavour(
    kind="gitea",
    title="Gitea",
    default_image=DEFAULT_IMAGE,
    runner_argv=RUNNER_ARGV,
    handle_from_major=None,
    jobs_listing="gitea",
    runner_path="/usr/local/bin/act_runner",
    workflow_dirs=(".gitea/workflows", ".github/workflows"),
)

_FRONT = _actions.ActionsFront(FLAVOUR)
options_from_config = _FRONT.options_from_config
describe_claim_model = _FRONT.describe_claim_model
open_gitea_provider = _FRONT.open_provider

__all__ = [
    "DEFAULT_IMAGE",
    "FLAVOUR",
    "RUNNER_ARGV",
    "ActionsOptions",
    "ActionsProvider",
    "describe_claim_model",
    "open_gitea_provider",
    "options_from_config",
]
