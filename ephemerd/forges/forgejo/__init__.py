"""Forgejo Actions: on servers >= 15 an ephemeral runner is created per job and handed
exactly that job (``forgejo-runner one-job --handle``); older servers get an ephemeral
runner registered by ephemerd with a pre-seeded ``.runner`` file (``forgejo-runner one-job``).

Everything but the flavour below lives in ``ephemerd.forges._actions``, shared with Gitea.
"""

from ephemerd.forges import _actions
from ephemerd.forges._actions import ActionsOptions, ActionsProvider

DEFAULT_IMAGE = "code.forgejo.org/forgejo/runner:12"
RUNNER_ARGV = ("forgejo-runner", "one-job", "--config", _actions.CONFIG_PATH)
"""The runner inside the sandbox when it was pre-seeded with a ``.runner`` file."""

FLAVOUR = _actions.Flavour(
    kind="forgejo",
    title="Forgejo",
    default_image=DEFAULT_IMAGE,
    runner_argv=RUNNER_ARGV,
    handle_from_major=15,
    jobs_listing="forgejo",
    runner_path="/bin/forgejo-runner",
    workflow_dirs=(".forgejo/workflows", ".github/workflows"),
)

_FRONT = _actions.ActionsFront(FLAVOUR)
options_from_config = _FRONT.options_from_config
describe_claim_model = _FRONT.describe_claim_model
open_forgejo_provider = _FRONT.open_provider

__all__ = [
    "DEFAULT_IMAGE",
    "FLAVOUR",
    "RUNNER_ARGV",
    "ActionsOptions",
    "ActionsProvider",
    "describe_claim_model",
    "open_forgejo_provider",
    "options_from_config",
]
