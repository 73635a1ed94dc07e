"""Runner names, which are also sandbox (containerd) ids.

containerd accepts ids made of ``[A-Za-z0-9]`` runs joined by single ``.``, ``_`` or ``-``,
at most 76 characters. The original used the repository name as-is, so ``owner/repo``,
``.github`` or ``a--b`` failed at container creation; every name here is sanitised.
"""

from __future__ import annotations

import re
import secrets

__all__ = ["MAX_ID_LENGTH", "runner_name", "sanitize_id"]

MAX_ID_LENGTH = 76
_SUFFIX_LENGTH = 8
_BAD_RUNS = re.compile(r"[^A-Za-z0-9._-]+")
_SEPARATOR_RUNS = re.compile(r"[._-]{2,}")


def sanitize_id(text: str, *, max_length: int = MAX_ID_LENGTH) -> str:
    """*text* made into a valid containerd id, or ``""`` if nothing usable is left.

    Invalid characters become ``-``; a run of separators collapses to its first one;
    separators are stripped from both ends, also after truncation to *max_length*.
    """
    text = _BAD_RUNS.sub("-", text)
    text = _SEPARATOR_RUNS.sub(lambda match: match.group(0)[0], text)
    return text[:max_length].strip("._-")


def runner_name(instance: str, repo: str, *, token: str | None = None) -> str:
    """A fresh ``ephemerd-<instance>-<repo-short>-<random>`` name, valid as a containerd id.

    Args:
        instance: the provider instance name.
        repo: the job's repository; only its last path segment is used.
        token: the random part, for tests; 8 lower-case hex digits by default.
    """
    suffix = sanitize_id(token if token is not None else secrets.token_hex(_SUFFIX_LENGTH // 2))
    suffix = suffix or secrets.token_hex(_SUFFIX_LENGTH // 2)
    short = repo.rstrip("/").rpartition("/")[2]
    room = MAX_ID_LENGTH - len(suffix) - 1
    parts = "-".join(part for part in ("ephemerd", instance, short) if part)
    head = sanitize_id(parts, max_length=room)
    return f"{head}-{suffix}"
