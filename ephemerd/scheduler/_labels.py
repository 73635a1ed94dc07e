"""This host's runner labels, and whether a job's labels are satisfied by them.

The original claimed every job and let the forge leave custom-label jobs (``gpu``)
stranded on a runner that could never take them. Here a job is claimed only when each
label it asks for is one this host offers.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterable

import msgspec

__all__ = ["HostLabels", "label_set_key"]

# Spellings of the same architecture that forges use interchangeably.
_ARCH_ALIASES: dict[str, tuple[str, ...]] = {
    "x86_64": ("x64", "amd64", "x86_64"),
    "amd64": ("x64", "amd64", "x86_64"),
    "x64": ("x64", "amd64", "x86_64"),
    "aarch64": ("arm64", "aarch64"),
    "arm64": ("arm64", "aarch64"),
}


def label_set_key(labels: Iterable[str]) -> tuple[str, ...]:
    """Labels lower-cased, trimmed, de-duplicated and sorted; empties dropped."""
    return tuple(sorted({label.strip().lower() for label in labels if label.strip()}))


class HostLabels(msgspec.Struct, frozen=True, kw_only=True):
    """The labels every runner of this host carries.

    Attributes:
        os: the host OS label; ephemerd runs Linux sandboxes only.
        arch: the machine architecture (``x86_64``, ``aarch64``...); its aliases match too.
        extra: configured extra labels (``gpu``, ``big``...).
        self_hosted: whether ``self-hosted`` is offered (GitHub and Gitea use it).
    """

    os: str = "linux"
    arch: str = msgspec.field(default_factory=platform.machine)
    extra: tuple[str, ...] = ()
    self_hosted: bool = True

    def runner_labels(self) -> tuple[str, ...]:
        """The labels to register a runner with: ``self-hosted``, OS, primary arch, extras."""
        return _runner_labels(self)

    def accepted(self) -> frozenset[str]:
        """Every lower-case label a job may ask for and still be runnable here."""
        return _accepted(self)

    def satisfies(self, job_labels: Iterable[str]) -> bool:
        """Whether every label the job asks for is offered here (case-insensitive).

        An empty label list means the job runs anywhere.
        """
        accepted = self.accepted()
        return all(label in accepted for label in label_set_key(job_labels))


# Asked for every event and every claim; a host's labels never change while it runs.
@functools.lru_cache(maxsize=64)
def _runner_labels(host: HostLabels) -> tuple[str, ...]:
    arch = host.arch.strip().lower()
    primary = _ARCH_ALIASES.get(arch, (arch,))[0]
    head = ["self-hosted"] if host.self_hosted else []
    out: list[str] = []
    for raw in [*head, host.os.strip().lower(), primary, *host.extra]:
        label = raw.strip()
        if label and label.lower() not in (seen.lower() for seen in out):
            out.append(label)
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _accepted(host: HostLabels) -> frozenset[str]:
    arch = host.arch.strip().lower()
    names = {host.os.strip().lower(), *_ARCH_ALIASES.get(arch, (arch,))}
    names.update(label.strip().lower() for label in host.extra)
    if host.self_hosted:
        names.add("self-hosted")
    names.discard("")
    return frozenset(names)
