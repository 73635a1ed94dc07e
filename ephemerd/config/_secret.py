"""A credential that never shows itself by accident.

``repr()``, ``str()`` and f-strings all give ``***``, so a Struct holding a ``Secret`` can be
logged or printed whole. Code that needs the value asks for it by name: ``secret.reveal()``.
"""

from __future__ import annotations

import hmac
from typing import NoReturn

__all__ = ["Secret"]


class Secret:
    """A credential from the config, an ``*_file`` or the environment.

    Args:
        value: the credential itself.
        source: where it came from, for ``ephemerd config check`` (``"file /run/x"``,
            ``"env GITHUB_TOKEN"``); empty when written inline in the config.
    """

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, *, source: str = "") -> None:
        self._value = value
        self._source = source

    def reveal(self) -> str:
        """The credential. Never log what this returns."""
        return self._value

    @property
    def source(self) -> str:
        return self._source

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> NoReturn:
        # Pickling would write the value out in clear; nothing in ephemerd needs it.
        raise TypeError("a Secret cannot be pickled")
