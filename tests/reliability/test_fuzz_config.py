"""Hostile config files: any bytes give one ``ConfigError`` line naming the file.

Structured near-miss documents are fuzzed in ``tests/config/test_fuzz.py``; this adds bytes
that are not TOML at all, not UTF-8, or absurdly nested.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ephemerd._errors import ConfigError
from ephemerd.config import load_config

from ._strategies import FUZZ


@FUZZ
@given(
    st.binary(max_size=200)
    | st.sampled_from(
        [b"a = " + b"[" * 50_000 + b"]" * 50_000, b"x = {" * 3000 + b"}" * 3000, b"\xff\xfe"]
    )
)
def test_config_bytes_give_one_config_error_line(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_bytes(data)
        try:
            load_config(path, data_dir=Path(tmp), env={})
        except ConfigError as error:
            assert "\n" not in str(error)
            assert str(error).startswith(f"{path}: ")
