"""The GitLab provider's options: one frozen Struct handed only to the provider."""

from __future__ import annotations

from pathlib import Path

import msgspec

from ephemerd._errors import ConfigError

__all__ = ["BUILDS_DIR", "CACHE_DIR", "DEFAULT_IMAGE", "SHELL_ARGV", "GitLabOptions"]

BUILDS_DIR = "/builds"
CACHE_DIR = "/cache"
DEFAULT_IMAGE = "busybox:latest"

# The shell a stage's script is fed to on stdin, as gitlab-runner's Docker executor picks
# it: bash where the image has one (the scripts are generated for bash), else sh.
_DETECT = """\
for shell in /usr/local/bin/bash /usr/bin/bash /bin/bash /usr/local/bin/sh /usr/bin/sh \
/bin/sh /busybox/sh; do
  if [ -x "$shell" ]; then exec "$shell"; fi
done
echo "ephemerd: no shell found in the job's image" >&2
exit 1
"""
SHELL_ARGV: tuple[str, ...] = ("sh", "-c", _DETECT)


class GitLabOptions(msgspec.Struct, frozen=True, kw_only=True):
    """One GitLab instance, served through gitlab-runner's custom executor.

    Attributes:
        name: the instance name, unique in the daemon.
        instance_url: the GitLab base URL (shown, and used to verify the token).
        token: the runner authentication token; gitlab-runner holds its own copy. Never
            logged (``repr`` hides it) and never handed to a sandbox.
        tags: the runner's tags; a job is admitted only when its runner's tags are all
            offered by this host (they are added to this instance's labels).
        default_image: image of jobs that name none ("" = the daemon's default).
        allowed_images: glob patterns a job's image must match; empty allows any.
        shell: argv that reads a stage's script from stdin inside the sandbox.
        system_id_file: where this host's runner-manager id is kept; when set, the token
            is verified with GitLab at start-up (a revoked token refuses every prepare).
        webhook_token: ``X-Gitlab-Token`` of Job Hook deliveries; set, the provider also
            receives them (``/webhook/<name>``) and shows waiting jobs as pending. Never
            logged (``repr`` hides it).
    """

    name: str = "gitlab"
    instance_url: str = "https://gitlab.com"
    token: str = msgspec.field(default="", name="token")
    tags: tuple[str, ...] = ()
    default_image: str = ""
    allowed_images: tuple[str, ...] = ()
    shell: tuple[str, ...] = SHELL_ARGV
    system_id_file: Path | None = None
    webhook_token: str = ""

    def __repr__(self) -> str:
        return f"GitLabOptions(name={self.name!r}, instance_url={self.instance_url!r})"

    def validate(self) -> None:
        """Raises: ConfigError naming the bad option."""
        if not self.name:
            raise ConfigError("gitlab: an instance needs a name")
        if not self.shell:
            raise ConfigError(f"{self.name}: shell must name a program")
