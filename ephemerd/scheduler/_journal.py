"""What ephemerd created, on disk, so a restart after a crash (even ``kill -9``) sweeps it.

A runner is recorded *before* it is registered on the forge and a sandbox *before* it is
created; both rows are removed only once teardown succeeded. Whatever a dead process
left is therefore in the journal, and the next start releases and destroys it.

SQLite in WAL mode with ``synchronous=OFF``: each call is a small local transaction
(well under a millisecond), so it runs on the Trio thread.

Claims are stored without the bytes of their files: those are credentials (JIT configs,
runner tokens) and releasing a runner needs only its identity.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from types import TracebackType

import msgspec

from ephemerd._errors import SchedulerError
from ephemerd.capabilities import Claim, ClaimFile

__all__ = ["Journal", "JournalRunner", "JournalSandbox"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runners (
    instance TEXT NOT NULL,
    job_id TEXT NOT NULL,
    runner_name TEXT NOT NULL,
    claim BLOB,
    created_at REAL NOT NULL,
    PRIMARY KEY (instance, runner_name)
);
CREATE TABLE IF NOT EXISTS sandboxes (
    name TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


class JournalRunner(msgspec.Struct, frozen=True, kw_only=True):
    """A runner registration a previous run may have left on its forge.

    ``claim`` is ``None`` when the process died between asking for the runner and
    hearing back; release then goes by name.
    """

    instance: str
    job_id: str
    runner_name: str
    claim: Claim | None = None

    def release_claim(self) -> Claim:
        """The claim to hand ``Provider.release_job``."""
        return self.claim or Claim(runner_id="", runner_name=self.runner_name)


class JournalSandbox(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    instance: str
    job_id: str


def _strip_secrets(claim: Claim) -> Claim:
    files = tuple(ClaimFile(path=f.path, content=b"", mode=f.mode) for f in claim.files)
    return msgspec.structs.replace(claim, files=files)


class Journal:
    """The SQLite journal at *path* (``":memory:"`` for tests), created 0600 if missing.

    Use it as a context manager, or call ``close()``.

    Raises:
        SchedulerError: the file cannot be opened or is not a journal.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                target = Path(self.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch(mode=0o600, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # One daemon owns its journal: exclusive locking skips the shared-memory index
            # and halves the cost of each small transaction.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            # OFF still survives a killed daemon (committed pages are in the OS cache); only
            # a host crash can lose the newest rows, and a host crash ends every sandbox too.
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise SchedulerError(f"cannot open journal {self.path}: {exc}") from exc

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"

    def close(self) -> None:
        """Commit what is pending and close the file."""
        try:
            if self._db.in_transaction:
                self._db.execute("COMMIT")
        except sqlite3.Error:
            pass  # closing anyway; the next start's sweep covers what was not written
        self._db.close()

    def _run(self, sql: str, args: tuple[object, ...], *, durable: bool) -> None:
        """Apply one change; *durable* ones are committed before this returns.

        A row that must survive a crash (a runner about to be registered, a sandbox about
        to be created) is durable. Forgetting and annotating rows is not: such changes
        ride along with the next commit, and losing them in a crash only makes the next
        start's sweep redo an idempotent release or destroy. One commit per job step
        instead of one per statement more than halves the journal's cost.
        """
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            self._db.execute(sql, args)
            if durable:
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise SchedulerError(f"journal {self.path}: {exc}") from exc

    def record_runner(self, instance: str, job_id: str, runner_name: str) -> None:
        """Note a runner about to be registered for *job_id*."""
        self._run(
            "INSERT OR REPLACE INTO runners VALUES (?, ?, ?, NULL, ?)",
            (instance, job_id, runner_name, time.time()),
            durable=True,
        )

    def record_claim(self, instance: str, claim: Claim) -> None:
        """Attach the forge's answer to a recorded runner (without file contents)."""
        blob = msgspec.msgpack.encode(_strip_secrets(claim))
        self._run(
            "UPDATE runners SET claim = ? WHERE instance = ? AND runner_name = ?",
            (blob, instance, claim.runner_name),
            durable=False,
        )

    def forget_runner(self, instance: str, runner_name: str) -> None:
        self._run(
            "DELETE FROM runners WHERE instance = ? AND runner_name = ?",
            (instance, runner_name),
            durable=False,
        )

    def record_sandbox(self, name: str, instance: str, job_id: str) -> None:
        """Note a sandbox about to be created."""
        self._run(
            "INSERT OR REPLACE INTO sandboxes VALUES (?, ?, ?, ?)",
            (name, instance, job_id, time.time()),
            durable=True,
        )

    def forget_sandbox(self, name: str) -> None:
        self._run("DELETE FROM sandboxes WHERE name = ?", (name,), durable=False)

    def runners(self) -> list[JournalRunner]:
        rows = self._db.execute(
            "SELECT instance, job_id, runner_name, claim FROM runners ORDER BY created_at"
        ).fetchall()
        out: list[JournalRunner] = []
        for instance, job_id, name, blob in rows:
            claim = None
            if blob is not None:
                try:
                    claim = msgspec.msgpack.decode(blob, type=Claim)
                except msgspec.DecodeError:
                    claim = None
            out.append(
                JournalRunner(instance=instance, job_id=job_id, runner_name=name, claim=claim)
            )
        return out

    def sandboxes(self) -> list[JournalSandbox]:
        rows = self._db.execute(
            "SELECT name, instance, job_id FROM sandboxes ORDER BY created_at"
        ).fetchall()
        return [JournalSandbox(name=n, instance=i, job_id=j) for n, i, j in rows]
