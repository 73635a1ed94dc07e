"""Creating and removing ephemerd's own ``workflow_job`` hooks, and nobody else's.

A hook is ours when its ``config.url`` is exactly the URL ephemerd serves; every other hook
(CI bots, chat integrations, another ephemerd host) is never edited or deleted. Register
reuses (and refreshes) a hook already pointing at our URL, so it is idempotent across
restarts; if any target fails, the hooks this call created are deleted again before the
error propagates, and also when the call is cancelled (each creation is shielded so that
no hook exists on GitHub that this side does not know of).
"""

from __future__ import annotations

import logging

import msgspec
import trio

from ephemerd._errors import ForgeError, ForgeNotFound

from ._client import GitHubClient, decode
from ._payloads import Hook

__all__ = ["HookManager"]

log = logging.getLogger(__name__)

ROLLBACK_TIMEOUT = 30.0
"""Seconds a rollback or deregistration may take once the caller is cancelled."""


class _Placed(msgspec.Struct, frozen=True):
    target: str  # "/repos/o/r" or "/orgs/o"
    hook_id: int
    created: bool


class HookManager:
    """The instance's hooks on each target (each repository, or the organisation).

    Args:
        client: the instance's REST client.
        targets: API path prefixes owning the hooks (``/repos/o/r`` or ``/orgs/o``).
        secret: the HMAC secret GitHub signs deliveries with.
    """

    def __init__(self, client: GitHubClient, targets: list[str], secret: str) -> None:
        self._client = client
        self._targets = targets
        self._secret = secret
        self._url = ""
        self._placed: list[_Placed] = []

    def __repr__(self) -> str:
        return f"HookManager(targets={self._targets!r}, url={self._url!r})"

    def _config(self, url: str) -> dict[str, str]:
        return {"url": url, "content_type": "json", "secret": self._secret, "insecure_ssl": "0"}

    async def _ours(self, target: str, url: str) -> list[Hook]:
        pages = await self._client.pages(f"{target}/hooks", list[Hook])
        return [hook for page in pages for hook in page if hook.config.url == url]

    async def register(self, url: str) -> None:
        """Make every target deliver ``workflow_job`` events to *url*.

        Raises:
            ForgeError: a target refused; hooks created by this call are removed first.
        """
        placed: list[_Placed] = []
        try:
            for target in self._targets:
                existing = await self._ours(target, url)
                body: dict[str, object] = {
                    "active": True,
                    "events": ["workflow_job"],
                    "config": self._config(url),
                }
                if existing:
                    hook_id = existing[0].id
                    await self._client.send("PATCH", f"{target}/hooks/{hook_id}", json=body)
                    placed.append(_Placed(target, hook_id, created=False))
                else:
                    # shielded: a hook GitHub created must be known here, to be rolled back
                    response = await self._client.send_shielded(
                        "POST", f"{target}/hooks", json={"name": "web", **body}
                    )
                    hook = decode(response, Hook, what=f"POST {target}/hooks")
                    placed.append(_Placed(target, hook.id, created=True))
                    await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            await self._remove([p for p in placed if p.created], shielded=True)
            raise
        self._url = url
        self._placed = placed
        log.info("github hooks for %s registered on %d target(s)", url, len(placed))

    async def deregister(self) -> None:
        """Delete the hooks pointing at the registered URL; others stay.

        Cancellation: the deletions run shielded, for at most ``ROLLBACK_TIMEOUT`` seconds.
        """
        if not self._url:
            return
        url, self._url = self._url, ""
        placed, self._placed = self._placed, []
        await self._remove(placed, shielded=True)
        log.info("github hooks for %s deregistered", url)

    async def _remove(self, placed: list[_Placed], *, shielded: bool) -> None:
        with trio.move_on_after(ROLLBACK_TIMEOUT, shield=shielded):
            for entry in placed:
                try:
                    await self._client.send(
                        "DELETE", f"{entry.target}/hooks/{entry.hook_id}", ok=(204,)
                    )
                except ForgeNotFound:
                    pass  # already gone
                except ForgeError as exc:
                    log.warning(
                        "github hook %s%s not deleted: %s", entry.target, entry.hook_id, exc
                    )
