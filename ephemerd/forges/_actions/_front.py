"""The public entry points of one forge, bound to its ``Flavour``.

``ephemerd.forges.forgejo`` and ``ephemerd.forges.gitea`` each make one ``ActionsFront``
and re-export its methods, so the two packages hold their differences (the flavour) and
nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx

from ephemerd.config import ProviderConfig

from ._from_config import describe_config
from ._from_config import options_from_config as _options_from_config
from ._options import ActionsOptions, Flavour
from ._provider import ActionsProvider, open_actions_provider

__all__ = ["ActionsFront"]


class ActionsFront:
    """Config mapping, ``config check`` line and provider factory of one flavour."""

    def __init__(self, flavour: Flavour) -> None:
        self.flavour = flavour

    def options_from_config(
        self, config: ProviderConfig, *, runner_labels: Sequence[str] = ()
    ) -> ActionsOptions:
        """The provider options of one validated section of this forge.

        Raises:
            ConfigError: *config* is a section of another forge.
        """
        return _options_from_config(config, self.flavour, runner_labels=runner_labels)

    def describe_claim_model(self, config: ProviderConfig) -> str:
        """The claim-model line ``ephemerd config check`` shows for a section (no I/O)."""
        return describe_config(config, self.flavour)

    def open_provider(
        self, options: ActionsOptions, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> AbstractAsyncContextManager[ActionsProvider]:
        """A provider of this forge; its HTTP client closes on exit.

        Raises:
            ConfigError: the options are inconsistent.
        """
        return self._open(options, transport)

    @asynccontextmanager
    async def _open(
        self, options: ActionsOptions, transport: httpx.AsyncBaseTransport | None
    ) -> AsyncGenerator[ActionsProvider, None]:
        async with open_actions_provider(options, self.flavour, transport=transport) as provider:
            yield provider
