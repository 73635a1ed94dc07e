"""The ``ephemerd`` command line: ``serve`` runs the daemon; the rest talk to it.

Every failure is one line on stderr, ``error: ...``, and a non-zero exit: 2 for usage
and configuration errors, 1 for anything else, 130 for Ctrl-C. Never a traceback.
Imports stay inside ``main`` so that importing this package costs nothing.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (the console script exits with it)."""
    tokens = sys.argv[1:] if argv is None else argv
    try:
        return _run(tokens)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()  # `ephemerd jobs | head`: the reader left; not an error
        return EXIT_ERROR


def _run(tokens: list[str]) -> int:
    from ephemerd._errors import ConfigError, EphemerdError, lone_exception

    try:
        result = _dispatch(tokens)
    except _UsageError as error:
        return _fail(str(error), EXIT_USAGE)
    except (EphemerdError, BaseExceptionGroup) as raised:
        error = lone_exception(raised)
        if isinstance(error, KeyboardInterrupt):
            raise error from None
        if isinstance(error, ConfigError):
            return _fail(str(error), EXIT_USAGE)
        if isinstance(error, EphemerdError):
            return _fail(str(error), EXIT_ERROR)
        return _fail(f"internal error: {type(error).__name__}: {error}", EXIT_ERROR)
    except Exception as error:  # a bug: still one line, never a traceback
        return _fail(f"internal error: {type(error).__name__}: {error}", EXIT_ERROR)
    return result if isinstance(result, int) else 0


class _UsageError(Exception):
    """The command line does not parse (cyclopts said why)."""


def _dispatch(tokens: list[str]) -> int | None:
    from ._quick import run_quick

    quick = run_quick(tokens)
    if quick is not None:
        return quick
    from cyclopts.exceptions import CycloptsError

    from ._app import app

    try:
        result: object = app.meta(
            tokens, exit_on_error=False, print_error=False, result_action="return_value"
        )
    except CycloptsError as error:
        raise _UsageError(_one_line(str(error)) or type(error).__name__) from None
    return result if isinstance(result, int) else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str, code: int) -> int:
    print(f"error: {_one_line(message)}", file=sys.stderr)
    return code


def _silence_stdout() -> None:
    import os

    # Point stdout at /dev/null so the interpreter's final flush does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
