"""The image a job asks for with ``container:``, read from its workflow file.

Shared by the forges that run GitHub-style workflows (GitHub, Forgejo, Gitea). The file is
read at the run's commit (so a later push cannot change it) and parsed once per run. A job
is found by its display name: the forges show a job as its ``name:`` (expressions
evaluated) or its key, followed by `` (a, b)`` for matrix legs unless the name already uses
the matrix. Only what can be known without evaluating expressions is returned; anything
uncertain gives ``None`` and the caller falls back to its default image.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import OrderedDict
from typing import cast

import yaml

__all__ = [
    "EXPRESSION_MARK",
    "JobImages",
    "WorkflowImages",
    "container_image",
    "decode_content",
    "find_image",
    "job_images",
]

EXPRESSION_MARK = "${{"
"""Starts an expression; an image holding one is known only once the forge evaluates it."""

JobImages = list[tuple[re.Pattern[str], str, str | None]]
"""``(display-name pattern, job key, image)`` per job of one workflow file."""

_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def _field(mapping: object, key: str) -> object:
    """``mapping[key]`` if *mapping* is a YAML mapping, else ``None``."""
    if isinstance(mapping, dict):
        return cast("dict[object, object]", mapping).get(key)  # pyright: ignore[reportUnknownArgumentType]
    return None


def container_image(job: object, *, keep_expressions: bool = False) -> str | None:
    """The image of a job's ``container:`` (a string, or a mapping with ``image``).

    Args:
        job: the job's YAML mapping.
        keep_expressions: return an image holding ``${{ ... }}`` as written (so the caller
            can say why it is not used) instead of ``None``.
    """
    container = _field(job, "container")
    nested = _field(container, "image")  # the mapping form
    if nested is not None:
        container = nested
    if not isinstance(container, str) or not container.strip():
        return None  # absent or empty
    if EXPRESSION_MARK in container and not keep_expressions:
        return None  # needs an expression evaluated
    return container.strip()


def _name_pattern(template: str) -> re.Pattern[str]:
    """A regex for the names GitHub may display for a job titled *template*."""
    parts = _EXPRESSION.split(template.strip())
    body = ".+?".join(re.escape(part) for part in parts)
    return re.compile(rf"{body}(?: \(.*\))?", re.DOTALL)


def job_images(workflow: str, *, keep_expressions: bool = False) -> JobImages:
    """Parse a workflow file into ``(name pattern, key, image)`` per job.

    Args:
        workflow: the file's text.
        keep_expressions: see ``container_image``.

    Raises:
        ValueError: the text is not a workflow (bad YAML, no ``jobs`` mapping).
    """
    try:
        document = yaml.safe_load(workflow)
    except yaml.YAMLError as exc:
        raise ValueError(f"workflow is not YAML: {exc}") from exc
    jobs = _field(document, "jobs")
    if not isinstance(jobs, dict):
        raise ValueError("workflow has no jobs mapping")
    found: JobImages = []
    for key, job in cast("dict[object, object]", jobs).items():
        key_text = str(key)
        name = _field(job, "name")
        title = name if isinstance(name, str) and name.strip() else key_text
        image = container_image(job, keep_expressions=keep_expressions)
        found.append((_name_pattern(title), key_text, image))
    return found


def find_image(jobs: JobImages, job_name: str) -> str | None:
    """The image of the job displayed as *job_name*, if exactly one job can be it."""
    candidates = {image for pattern, _, image in jobs if pattern.fullmatch(job_name)}
    if not candidates:
        candidates = {image for _, key, image in jobs if key == job_name}
    if len(candidates) != 1:
        return None  # unknown job, or ambiguous (two templates match the same name)
    return candidates.pop()


def decode_content(content: str) -> str:
    """The text of a contents-API answer (base64, with newlines).

    Raises:
        ValueError: not base64 or not UTF-8.
    """
    try:
        return base64.b64decode(content, validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("workflow content is not base64 UTF-8") from exc


class WorkflowImages:
    """A bounded cache of parsed workflows, keyed by ``(repo, run_id)``."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._runs: OrderedDict[tuple[str, str], JobImages] = OrderedDict()

    def get(self, repo: str, run_id: str) -> JobImages | None:
        jobs = self._runs.get((repo, run_id))
        if jobs is not None:
            self._runs.move_to_end((repo, run_id))
        return jobs

    def put(self, repo: str, run_id: str, jobs: JobImages) -> None:
        self._runs[(repo, run_id)] = jobs
        self._runs.move_to_end((repo, run_id))
        while len(self._runs) > self._size:
            self._runs.popitem(last=False)
