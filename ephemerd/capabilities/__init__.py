"""The Protocols and shared types every layer speaks. No I/O happens here."""

from ._claims import Claim, ClaimFile, ImageMount
from ._events import JobAction, JobEvent, JobKey, PollConfig, RateLimitHint
from ._executor import CustomExecutor, ExecutorRequest
from ._provider import (
    DrivesJob,
    FollowsCapacity,
    FollowsCordon,
    Poll,
    Provider,
    RateLimitReporter,
    RunnerNameReporter,
    Webhook,
    WebhookReply,
    WebhookRequest,
)
from ._sandbox import (
    ExitReason,
    OutputSink,
    ResourceLimits,
    SandboxBackend,
    SandboxExit,
    SandboxHandle,
    SandboxSpec,
    SandboxStats,
)
from ._status import DaemonStatus, JobChange, JobState, JobView, ProviderState, ProviderView

__all__ = [
    "Claim",
    "ClaimFile",
    "CustomExecutor",
    "DaemonStatus",
    "DrivesJob",
    "ExecutorRequest",
    "ExitReason",
    "FollowsCapacity",
    "FollowsCordon",
    "ImageMount",
    "JobAction",
    "JobChange",
    "JobEvent",
    "JobKey",
    "JobState",
    "JobView",
    "OutputSink",
    "Poll",
    "PollConfig",
    "Provider",
    "ProviderState",
    "ProviderView",
    "RateLimitHint",
    "RateLimitReporter",
    "ResourceLimits",
    "RunnerNameReporter",
    "SandboxBackend",
    "SandboxExit",
    "SandboxHandle",
    "SandboxSpec",
    "SandboxStats",
    "Webhook",
    "WebhookReply",
    "WebhookRequest",
]
