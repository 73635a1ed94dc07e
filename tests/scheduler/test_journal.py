from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ephemerd._errors import SchedulerError
from ephemerd.capabilities import Claim, ClaimFile
from ephemerd.scheduler import Journal


def test_rows_survive_reopen_and_strip_secrets(tmp_path: Path):
    path = tmp_path / "data" / "journal.sqlite"
    with Journal(path) as journal:
        journal.record_runner("gh", "1", "r1")
        claim = Claim(
            runner_id="42",
            runner_name="r1",
            env={"A": "b"},
            files=(ClaimFile(path="/jit", content=b"SECRET"),),
        )
        journal.record_claim("gh", claim)
        journal.record_sandbox("r1", "gh", "1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"SECRET" not in path.read_bytes()
    with Journal(path) as journal:
        (runner,) = journal.runners()
        assert runner.claim is not None and runner.claim.runner_id == "42"
        assert runner.claim.files[0].content == b""
        assert runner.release_claim().env == {"A": "b"}
        assert [s.name for s in journal.sandboxes()] == ["r1"]
        assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        journal.forget_runner("gh", "r1")
        journal.forget_sandbox("r1")
        assert journal.runners() == [] and journal.sandboxes() == []


def test_claim_missing_means_release_by_name(tmp_path: Path):
    with Journal(tmp_path / "j") as journal:
        journal.record_runner("gh", "1", "r1")
        (runner,) = journal.runners()
        assert runner.release_claim() == Claim(runner_id="", runner_name="r1")


def test_not_a_journal(tmp_path: Path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SchedulerError, match="cannot open journal"):
        Journal(bad)
