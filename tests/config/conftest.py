"""Helpers: write a config file into a temporary data dir and load it for real."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from ephemerd._errors import ConfigError
from ephemerd.config import Config, load_config

Load = Callable[..., Config]
Fail = Callable[..., str]


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return tmp_path / "config.toml"


@pytest.fixture
def load(tmp_path: Path, config_path: Path) -> Load:
    """Write *text* as the config file and load it with an explicit ``--config``."""

    def _load(text: str, *, env: Mapping[str, str] | None = None) -> Config:
        config_path.write_text(text)
        return load_config(config_path, data_dir=tmp_path, env=env or {})

    return _load


@pytest.fixture
def fail(load: Load, config_path: Path) -> Fail:
    """Load *text*, expect a ConfigError, and return its message without the file prefix."""

    def _fail(text: str, *, env: Mapping[str, str] | None = None) -> str:
        with pytest.raises(ConfigError) as caught:
            load(text, env=env)
        message = str(caught.value)
        assert "\n" not in message
        prefix = f"{config_path}: "
        assert message.startswith(prefix), message
        return message.removeprefix(prefix)

    return _fail
