"""GitLab CI: gitlab-runner polls GitLab and runs each job through ephemerd as its custom
executor (``ephemerd gitlab-executor config|prepare|run|cleanup``); every job gets a fresh
sandbox.

The provider (``open_gitlab_provider(GitLabOptions(...))``) is the daemon side of the
executor: ``Provider`` + ``DrivesJob`` + ``CustomExecutor``, and ``Webhook`` when a Job
Hook token is configured (waiting jobs are then shown as pending). Otherwise this package
speaks only to GitLab and gitlab-runner: the runner-token check (``verify_runner``), the
Job Hook webhook (``parse_job_hook``), gitlab-runner's ``[[runners]]`` block
(``render_runner_block``) and its supervision (``supervise_gitlab_runner``).
"""

from ._api import (
    VERIFY_RETRY,
    FeaturesInfo,
    RunnerIdentity,
    RunnerInfo,
    custom_executor_info,
    load_system_id,
    verify_runner,
)
from ._from_config import options_from_config
from ._hook import (
    JOB_EVENTS,
    MAX_BODY,
    HookReceiver,
    HookRejected,
    JobHook,
    job_event,
    parse_job_hook,
)
from ._install import DEFAULT_STAGE_TIMEOUT, executor_args, render_runner_block, toml_string
from ._job import GitLabJob, image_allowed, runner_tags
from ._options import BUILDS_DIR, CACHE_DIR, DEFAULT_IMAGE, SHELL_ARGV, GitLabOptions
from ._provider import GitLabProvider, GitLabWebhookProvider, open_gitlab_provider
from ._supervise import RESTART_POLICY, RunnerSwitch, resolve_binary, supervise_gitlab_runner

__all__ = [
    "BUILDS_DIR",
    "CACHE_DIR",
    "DEFAULT_IMAGE",
    "DEFAULT_STAGE_TIMEOUT",
    "JOB_EVENTS",
    "MAX_BODY",
    "RESTART_POLICY",
    "SHELL_ARGV",
    "VERIFY_RETRY",
    "FeaturesInfo",
    "GitLabJob",
    "GitLabOptions",
    "GitLabProvider",
    "GitLabWebhookProvider",
    "HookReceiver",
    "HookRejected",
    "JobHook",
    "RunnerIdentity",
    "RunnerInfo",
    "RunnerSwitch",
    "custom_executor_info",
    "executor_args",
    "image_allowed",
    "job_event",
    "load_system_id",
    "open_gitlab_provider",
    "options_from_config",
    "parse_job_hook",
    "render_runner_block",
    "resolve_binary",
    "runner_tags",
    "supervise_gitlab_runner",
    "toml_string",
    "verify_runner",
]
