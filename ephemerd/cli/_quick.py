"""A hand-parsed path for ``ephemerd [--data-dir D] [-c F] status [--json]`` and ``version``.

Importing cyclopts costs about as much as the whole status call, and scripts poll
``ephemerd status``; so these two exact shapes skip it. Anything else, ``--help``
included, returns ``None`` and goes through the cyclopts application, which defines the
same commands and options.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["run_quick"]

_GLOBAL = {"--data-dir": "data_dir", "--config": "config", "-c": "config"}


def run_quick(tokens: list[str]) -> int | None:
    """Run *tokens* if they are a quick command; ``None`` if cyclopts must parse them."""
    options: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, eq, value = token.partition("=")
        if name in _GLOBAL:
            if not eq:
                if i + 1 >= len(tokens):
                    return None
                i += 1
                value = tokens[i]
            options[_GLOBAL[name]] = value
        else:
            rest.append(token)
        i += 1
    if rest == ["version"]:
        from ephemerd import __version__

        print(f"ephemerd {__version__}")
        return 0
    if rest not in (["status"], ["status", "--json"]):
        return None
    from ._options import GlobalOptions, resolve_data_dir
    from ._status import show_status

    data_dir = options.get("data_dir")
    config = options.get("config")
    opts = GlobalOptions(
        data_dir=resolve_data_dir(Path(data_dir) if data_dir else None),
        config=Path(config) if config else None,
    )
    return show_status(opts, as_json=rest == ["status", "--json"])
