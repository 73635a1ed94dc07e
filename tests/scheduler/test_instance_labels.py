"""Labels offered to one provider instance only."""

from __future__ import annotations

from ephemerd.capabilities import JobKey
from ephemerd.scheduler import HostLabels, SchedulerOptions
from ephemerd.scheduler._admission import Admission, Verdict

HOST = HostLabels(arch="x86_64", extra=("big",))


def test_instance_labels_satisfy_only_their_instance() -> None:
    admission = Admission(HOST, dedup_window=600, instance_labels={"fj": ("ubuntu-latest",)})
    labels = ("ubuntu-latest",)
    assert admission.check(JobKey("fj", "1"), labels, tracked=False, now=0) is Verdict.ADMIT
    assert admission.check(JobKey("gh", "1"), labels, tracked=False, now=0) is Verdict.LABELS
    # the host's own labels still count for every instance
    assert admission.check(JobKey("gh", "2"), ("big", "x64"), tracked=False, now=0) is Verdict.ADMIT


def test_runners_register_the_instance_labels_after_the_host_ones() -> None:
    options = SchedulerOptions(labels=HOST, instance_labels={"fj": ("ubuntu-latest", "BIG")})
    assert options.runner_labels("fj") == ("self-hosted", "linux", "x64", "big", "ubuntu-latest")
    assert options.runner_labels("gh") == ("self-hosted", "linux", "x64", "big")
