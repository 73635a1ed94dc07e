"""Which discovered jobs this instance reports: one rule for webhook, poll and reconcile.

The Go original applied its dispatch policy to webhooks only, so polling bypassed it; here
every discovery path calls ``JobPolicy.refusal``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SELF_HOSTED", "JobPolicy"]

SELF_HOSTED = "self-hosted"


class JobPolicy:
    """The instance's rules for queued jobs.

    Args:
        owner: the owner every repository must belong to.
        repos: the served repositories (short names); empty means any of the owner's.
        allowed_repos: when non-empty, further restricts repositories (short or full names).
        required_labels: labels a job must all ask for, on top of ``self-hosted``.
    """

    def __init__(
        self,
        *,
        owner: str,
        repos: Iterable[str] = (),
        allowed_repos: Iterable[str] = (),
        required_labels: Iterable[str] = (),
    ) -> None:
        self._owner = owner.lower()
        self._repos = {r.lower() for r in repos}
        allowed = tuple(allowed_repos)
        # an allowed_repos list naming only other owners' repositories admits nothing
        self._allowed_given = bool(allowed)
        self._allowed = {self._short(r) for r in allowed if self._mine(r)}
        self._required = {label.lower() for label in required_labels}

    def _mine(self, repo: str) -> bool:
        owner, slash, _ = repo.lower().rpartition("/")
        return not slash or owner == self._owner

    @staticmethod
    def _short(repo: str) -> str:
        return repo.lower().rpartition("/")[2]

    def refusal(self, repo: str, labels: Iterable[str]) -> str | None:
        """Why a queued job of *repo* (``owner/name``) asking for *labels* is not ours.

        Returns ``None`` when the job passes every rule.
        """
        owner, slash, name = repo.lower().rpartition("/")
        if not slash or not name:
            return f"repository {repo!r} is not owner/name"
        if owner != self._owner:
            return f"repository {repo} is not under {self._owner}"
        if self._repos and name not in self._repos:
            return f"repository {repo} is not served by this instance"
        if self._allowed_given and name not in self._allowed:
            return f"repository {repo} is not in allowed_repos"
        asked = {label.lower() for label in labels}
        if SELF_HOSTED not in asked:
            return "the job does not ask for a self-hosted runner"
        missing = self._required - asked
        if missing:
            return f"the job lacks required labels {sorted(missing)}"
        return None
