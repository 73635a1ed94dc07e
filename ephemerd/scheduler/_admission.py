"""Whether a queued event becomes a job: label match, dedup window, cordon.

Admission is synchronous and runs on the Trio thread, so deciding and recording a job
happen with no checkpoint in between: identical concurrent events give exactly one job.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from ephemerd.capabilities import JobKey

from ._labels import HostLabels, label_set_key

__all__ = ["Admission", "Verdict"]


class Verdict(enum.Enum):
    """What to do with a queued event."""

    ADMIT = "admit"
    LABELS = "labels"  # the job asks for a label this host lacks
    TRACKED = "tracked"  # already parked, running or retrying
    RECENT = "recent"  # handled within the dedup window
    CORDONED = "cordoned"  # not claiming; the next delivery after uncordon is admitted


_LABEL_CACHE_SIZE = 4096


class Admission:
    """The intake gates, with the dedup stamps they need.

    Args:
        labels: this host's runner labels.
        dedup_window: seconds a handled job's queued events are ignored.
        instance_labels: extra labels offered to one provider instance only (a Forgejo
            runner's ``ubuntu-latest``, say, means nothing to GitHub).
    """

    def __init__(
        self,
        labels: HostLabels,
        *,
        dedup_window: float,
        instance_labels: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.labels = labels
        self._accepted = labels.accepted()
        self._accepted_by_instance = {
            instance: self._accepted | frozenset(label_set_key(extra))
            for instance, extra in (instance_labels or {}).items()
        }
        self._label_verdicts: dict[tuple[str, tuple[str, ...]], bool] = {}
        self.dedup_window = dedup_window
        self.cordoned = False
        self._stamps: dict[JobKey, float] = {}

    def check(self, key: JobKey, labels: tuple[str, ...], *, tracked: bool, now: float) -> Verdict:
        """Judge one queued event at Trio time *now*. No side effect."""
        if not self._labels_ok(key.instance, labels):
            return Verdict.LABELS
        if tracked:
            return Verdict.TRACKED
        stamp = self._stamps.get(key)
        if stamp is not None and now - stamp < self.dedup_window:
            return Verdict.RECENT
        if self.cordoned:
            return Verdict.CORDONED
        return Verdict.ADMIT

    def _labels_ok(self, instance: str, labels: tuple[str, ...]) -> bool:
        # The same few label sets arrive again and again (every poll, every duplicate).
        cache_key = (instance, labels)
        ok = self._label_verdicts.get(cache_key)
        if ok is None:
            accepted = self._accepted_by_instance.get(instance, self._accepted)
            ok = all(label in accepted for label in label_set_key(labels))
            if len(self._label_verdicts) >= _LABEL_CACHE_SIZE:
                self._label_verdicts.clear()
            self._label_verdicts[cache_key] = ok
        return ok

    def stamp(self, key: JobKey, now: float) -> None:
        """Remember *key* as handled at *now*."""
        self._stamps[key] = now

    def unstamp(self, key: JobKey) -> None:
        """Forget *key*, so its next queued event is admitted (e.g. abandoned by a cordon)."""
        self._stamps.pop(key, None)

    def prune(self, now: float) -> None:
        """Drop stamps older than the dedup window."""
        horizon = now - self.dedup_window
        for key in [k for k, at in self._stamps.items() if at <= horizon]:
            del self._stamps[key]
