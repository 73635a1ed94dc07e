"""A hand-parsed path for the commands that must start fast, skipping cyclopts.

Importing cyclopts costs about as much as the whole call. Scripts poll ``ephemerd
status``, and gitlab-runner starts ``ephemerd gitlab-executor`` once per stage (about a
dozen times per job), so these exact shapes skip it:

- ``ephemerd [--data-dir D] [-c F] status [--json]`` and ``version``;
- ``ephemerd [...] gitlab-executor config [--builds-dir B] [--cache-dir C]``;
- ``ephemerd [...] gitlab-executor prepare|cleanup [--instance I]``;
- ``ephemerd [...] gitlab-executor run SCRIPT STAGE [--instance I]``.

Options may also be written ``--name=value``. Anything else (``--help``, a repeated or
unknown option, a missing argument) returns ``None`` and goes through the cyclopts
application, which defines the same commands and options and calls the same functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._options import GlobalOptions

__all__ = ["run_quick"]

_GLOBAL = {"--data-dir": "data_dir", "--config": "config", "-c": "config"}
# gitlab-executor stage: (its options, how many positional arguments)
_STAGES = {
    "config": (("--builds-dir", "--cache-dir"), 0),
    "prepare": (("--instance",), 0),
    "run": (("--instance",), 2),
    "cleanup": (("--instance",), 0),
}


def run_quick(tokens: list[str]) -> int | None:
    """Run *tokens* if they are a quick command; ``None`` if cyclopts must parse them."""
    split = _options(tokens, _GLOBAL)
    if split is None:
        return None
    options, rest = split
    if rest == ["version"]:
        from ephemerd import __version__

        print(f"ephemerd {__version__}")
        return 0
    if rest in (["status"], ["status", "--json"]):
        from ._status import show_status

        return show_status(_global(options), as_json=rest == ["status", "--json"])
    if len(rest) >= 2 and rest[0] == "gitlab-executor" and rest[1] in _STAGES:
        return _gitlab(rest[1], rest[2:], options)
    return None


def _gitlab(stage: str, tokens: list[str], global_options: dict[str, str]) -> int | None:
    names, positional = _STAGES[stage]
    split = _options(tokens, {name: name for name in names})
    if split is None:
        return None
    options, args = split
    if len(args) != positional or any(arg.startswith("-") for arg in args):
        return None
    from . import _gitlab as gitlab

    instance = options.get("--instance", "")
    if stage == "config":
        return gitlab.executor_config(
            builds_dir=options.get("--builds-dir", "/builds"),
            cache_dir=options.get("--cache-dir", "/cache"),
        )
    opts = _global(global_options)
    if stage == "prepare":
        return gitlab.executor_prepare(opts, instance=instance)
    if stage == "run":
        return gitlab.executor_run(opts, Path(args[0]), args[1], instance=instance)
    return gitlab.executor_cleanup(opts, instance=instance)


def _options(tokens: list[str], names: dict[str, str]) -> tuple[dict[str, str], list[str]] | None:
    """The options in *names* (each at most once, with a value) and the other tokens."""
    options: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, eq, value = token.partition("=")
        if name in names:
            if not eq:
                if i + 1 >= len(tokens):
                    return None
                i += 1
                value = tokens[i]
            if names[name] in options:
                return None
            options[names[name]] = value
        else:
            rest.append(token)
        i += 1
    return options, rest


def _global(options: dict[str, str]) -> GlobalOptions:
    from ._options import GlobalOptions, resolve_data_dir

    data_dir = options.get("data_dir")
    config = options.get("config")
    return GlobalOptions(
        data_dir=resolve_data_dir(Path(data_dir) if data_dir else None),
        config=Path(config) if config else None,
    )
