"""The shipped example config is valid as it is, and with every example section enabled."""

from __future__ import annotations

import re
from pathlib import Path

import ephemerd
from ephemerd.config import Config, describe, load_config

EXAMPLE = Path(ephemerd.__file__).parent / "examples" / "config.toml"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"
# A commented-out line of TOML (a table header or a key), as opposed to prose.
CODE = re.compile(r"^# (?=\[|[a-z_]+ = )", re.MULTILINE)


def test_example_as_shipped_is_the_defaults(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, data_dir=tmp_path, env={})
    assert config.providers == ()
    defaults = Config(data_dir=tmp_path, source=EXAMPLE, sandbox=config.sandbox)
    assert config == defaults
    assert config.sandbox == load_config(None, data_dir=tmp_path, env={}).sandbox


def test_example_with_every_section_uncommented(tmp_path: Path) -> None:
    text = CODE.sub("", EXAMPLE.read_text())
    path = tmp_path / "config.toml"
    path.write_text(text)
    (tmp_path / "github-app.pem").write_text(PEM)
    config = load_config(path, data_dir=tmp_path, env={})
    assert [(p.kind, p.name) for p in config.providers] == [
        ("github", "github"),
        ("github", "github-app"),
        ("forgejo", "codeberg"),
        ("forgejo", "forgejo-eu"),
        ("gitea", "gitea"),
        ("gitlab", "gitlab"),
        ("woodpecker", "woodpecker"),
        ("memory", "memory"),
    ]
    assert "replace" not in describe(config)
