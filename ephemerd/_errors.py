"""The one error tree of ephemerd.

Every error ephemerd raises on purpose derives from ``EphemerdError``, so a caller can catch
"anything from ephemerd" in one place. Foreign exceptions (httpx, grpclib, OSError) are
translated where they enter a layer, so the scheduler only ever catches ephemerd errors::

    EphemerdError
    ├── ConfigError                 bad or missing configuration (exit 2)
    ├── ForgeError                  a forge said no, or could not be reached
    │   ├── ForgeAuthError          credentials rejected; not retried
    │   ├── ForgePermissionError    authenticated but not allowed; not retried
    │   ├── ForgeNotFound           the thing asked for does not exist; not retried
    │   ├── ForgeConflict           a name or claim is already taken
    │   ├── ForgeRateLimited        slow down; carries ``retry_after`` and a ``RateLimitHint``
    │   ├── ForgeUnavailable        5xx, network errors, timeouts; retried
    │   └── ForgeProtocolError      the forge answered something we cannot parse
    ├── SandboxError                the sandbox layer failed
    │   ├── ImagePullError          an image could not be pulled or unpacked
    │   ├── SandboxNotFound         no such sandbox (already destroyed)
    │   └── RuntimeUnavailable      containerd/runc missing or not answering
    ├── SchedulerError
    │   ├── Cordoned                the daemon is cordoned or draining; not claiming
    │   └── JobNotFound             no job with that key
    └── ControlError                the control plane could not be reached or refused
        ├── DaemonAlreadyRunning    another daemon answers on the control socket
        └── DaemonNotRunning        nothing answers on the control socket
"""

from __future__ import annotations

import sys
from typing import cast

__all__ = [
    "ConfigError",
    "ControlError",
    "Cordoned",
    "DaemonAlreadyRunning",
    "DaemonNotRunning",
    "EphemerdError",
    "ForgeAuthError",
    "ForgeConflict",
    "ForgeError",
    "ForgeNotFound",
    "ForgePermissionError",
    "ForgeProtocolError",
    "ForgeRateLimited",
    "ForgeUnavailable",
    "ImagePullError",
    "JobNotFound",
    "RuntimeUnavailable",
    "SandboxError",
    "SandboxNotFound",
    "SchedulerError",
    "lone_exception",
]


class EphemerdError(Exception):
    """Base of every error ephemerd raises on purpose.

    ``str(error)`` is always one line fit to show an operator as it is.
    """

    retryable: bool = False


class ConfigError(EphemerdError):
    """The configuration is invalid; the message names the file and the key."""


class ForgeError(EphemerdError):
    """A forge refused a request or could not be reached."""

    retryable = True


class ForgeAuthError(ForgeError):
    """The forge rejected our credentials. Retrying will not help."""

    retryable = False


class ForgePermissionError(ForgeError):
    """The credentials are valid but lack a permission. Retrying will not help."""

    retryable = False


class ForgeNotFound(ForgeError):
    """The forge says the object does not exist."""

    retryable = False


class ForgeConflict(ForgeError):
    """A name or a claim is already taken (HTTP 409 and its equivalents)."""


class ForgeRateLimited(ForgeError):
    """The forge asked us to slow down.

    Args:
        retry_after: seconds to wait before the next request, when the forge said so.
        reset_at: the Unix time at which the quota resets, when the forge said so.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, reset_at: float | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reset_at = reset_at


class ForgeUnavailable(ForgeError):
    """A 5xx answer, a timeout or a network error: worth retrying later."""


class ForgeProtocolError(ForgeError):
    """The forge answered with something that does not parse as its protocol says."""


class SandboxError(EphemerdError):
    """The sandbox layer failed to create, run or destroy a sandbox."""


class ImagePullError(SandboxError):
    """An image could not be pulled, verified or unpacked."""


class SandboxNotFound(SandboxError):
    """No sandbox with that name exists (it may already be destroyed)."""


class RuntimeUnavailable(SandboxError):
    """containerd or runc is missing or does not answer."""


class SchedulerError(EphemerdError):
    """The scheduler refused an operation."""


class Cordoned(SchedulerError):
    """The daemon is cordoned or draining and claims no new jobs."""


class JobNotFound(SchedulerError):
    """No job with that key is known to the daemon."""


class ControlError(EphemerdError):
    """The control plane refused a request or could not be reached."""


class DaemonAlreadyRunning(ControlError):
    """Another daemon already answers on the control socket of this data dir."""


class DaemonNotRunning(ControlError):
    """Nothing answers on the control socket."""


def lone_exception(error: BaseException) -> BaseException:
    """The one real error inside *error*'s (nested) exception groups, else *error* itself.

    Trio's nurseries wrap whatever escapes them in an ``ExceptionGroup``, and a failing
    task cancels its siblings: a group holding one error and some ``Cancelled`` reads, to
    the caller, as that error. ``except JobNotFound`` around a nursery works once the
    group is unwrapped with this.
    """
    leaves: list[BaseException] = []
    pending = [error]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            group = cast(BaseExceptionGroup[BaseException], current)
            pending.extend(reversed(group.exceptions))
        else:
            leaves.append(current)
    errors = [leaf for leaf in leaves if not _is_cancellation(leaf)]
    if len(errors) == 1:
        return errors[0]
    if not errors and len(leaves) == 1:
        return leaves[0]
    return error


def _is_cancellation(error: BaseException) -> bool:
    # Looked up, not imported: the CLI's quick commands must not pay for importing trio,
    # and without trio loaded there is no Trio cancellation to find.
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(error, trio.Cancelled)
