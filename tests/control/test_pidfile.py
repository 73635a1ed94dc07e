"""The PID file: written whole, removed only by its owner, read strictly."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ephemerd._errors import ControlError, DaemonNotRunning
from ephemerd.control import pid_file, read_pid_file, remove_pid_file, write_pid_file


def test_written_as_decimal_without_newline_0644(tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.pid"
    with pid_file(path):
        assert path.read_text() == str(os.getpid())
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        assert read_pid_file(path) == os.getpid()
    assert not path.exists()


def test_a_newer_daemons_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.pid"
    write_pid_file(path, 4242)
    remove_pid_file(path)  # we are not 4242
    assert read_pid_file(path) == 4242
    remove_pid_file(path, 4242)
    assert not path.exists()
    remove_pid_file(path)  # already gone: fine


def test_read_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.pid"
    with pytest.raises(DaemonNotRunning, match="no pid file"):
        read_pid_file(path)
    for junk in ("", "abc", "-3", "0", "12 13"):
        path.write_text(junk)
        with pytest.raises(ControlError, match="invalid pid file"):
            read_pid_file(path)
