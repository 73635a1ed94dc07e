from __future__ import annotations

from ephemerd.capabilities import JobKey
from ephemerd.scheduler import HostLabels
from ephemerd.scheduler._admission import Admission, Verdict

KEY = JobKey("gh", "1")


def test_verdicts_in_order():
    gate = Admission(HostLabels(arch="x86_64"), dedup_window=600)
    assert gate.check(KEY, ("gpu",), tracked=True, now=0) is Verdict.LABELS
    assert gate.check(KEY, (), tracked=True, now=0) is Verdict.TRACKED
    assert gate.check(KEY, (), tracked=False, now=0) is Verdict.ADMIT
    gate.stamp(KEY, 0)
    assert gate.check(KEY, (), tracked=False, now=599) is Verdict.RECENT
    assert gate.check(KEY, (), tracked=False, now=600) is Verdict.ADMIT
    gate.cordoned = True
    assert gate.check(JobKey("gh", "2"), (), tracked=False, now=0) is Verdict.CORDONED


def test_unstamp_and_prune():
    gate = Admission(HostLabels(arch="x86_64"), dedup_window=10)
    gate.stamp(KEY, 0)
    gate.unstamp(KEY)
    assert gate.check(KEY, (), tracked=False, now=1) is Verdict.ADMIT
    gate.stamp(KEY, 0)
    gate.prune(5)
    assert gate.check(KEY, (), tracked=False, now=5) is Verdict.RECENT
    gate.prune(10)
    assert gate.check(KEY, (), tracked=False, now=5) is Verdict.ADMIT
