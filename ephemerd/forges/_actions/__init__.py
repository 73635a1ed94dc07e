"""What Forgejo and Gitea Actions share: the runner protocol (ConnectRPC), the REST API,
the claim models and the provider, parametrised by a ``Flavour``.

``ephemerd.forges.forgejo`` and ``ephemerd.forges.gitea`` are thin fronts over this
package; nothing here is forge-specific except through ``Flavour``.
"""

from ._codec import JSON_TYPE, PROTO_TYPE, CodecError, decode_message, encode_message
from ._connect import RUNNER_SERVICE, ConnectClient, RunnerCredentials
from ._from_config import describe_config, options_from_config
from ._front import ActionsFront
from ._images import JobImageFinder
from ._models import ClaimModel, Discovery, choose_model, describe_claim_model, server_major
from ._options import ActionsOptions, Flavour
from ._pool import POOL_PREFIX, WarmPool
from ._provider import ActionsProvider, open_actions_provider
from ._rest import ActionRun, CreatedRunner, ForgejoJob, GiteaJob, RestClient, RunnerInfo
from ._runner import (
    CONFIG_PATH,
    RUNNER_DIR,
    RUNNER_FILE_PATH,
    RUNNER_MOUNT,
    TOKEN_PATH,
    handle_argv,
    host_labels,
    in_job_image,
    label_names,
    registered_files,
)

__all__ = [
    "CONFIG_PATH",
    "JSON_TYPE",
    "POOL_PREFIX",
    "PROTO_TYPE",
    "RUNNER_DIR",
    "RUNNER_FILE_PATH",
    "RUNNER_MOUNT",
    "RUNNER_SERVICE",
    "TOKEN_PATH",
    "ActionRun",
    "ActionsFront",
    "ActionsOptions",
    "ActionsProvider",
    "ClaimModel",
    "CodecError",
    "ConnectClient",
    "CreatedRunner",
    "Discovery",
    "Flavour",
    "ForgejoJob",
    "GiteaJob",
    "JobImageFinder",
    "RestClient",
    "RunnerCredentials",
    "RunnerInfo",
    "WarmPool",
    "choose_model",
    "decode_message",
    "describe_claim_model",
    "describe_config",
    "encode_message",
    "handle_argv",
    "host_labels",
    "in_job_image",
    "label_names",
    "open_actions_provider",
    "options_from_config",
    "registered_files",
    "server_major",
]
