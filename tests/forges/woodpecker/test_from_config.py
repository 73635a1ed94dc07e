"""options_from_config, option checks, redaction and the package's exports."""

from __future__ import annotations

from pathlib import Path

import pytest

import ephemerd.forges.woodpecker as woodpecker
from ephemerd._errors import ConfigError
from ephemerd.capabilities import DrivesJob, Poll, Provider, Webhook
from ephemerd.config import Address, GitHubConfig, Secret, WoodpeckerConfig
from ephemerd.forges.woodpecker import WoodpeckerOptions, options_from_config
from tests.fakes.woodpecker import FakeWoodpecker

from .conftest import provider_for


def test_a_section_maps_every_field(tmp_path: Path) -> None:
    section = WoodpeckerConfig(
        name="wp-eu",
        server_url=Address("ci.example.com", 9000),
        agent_secret=Secret("s3cret-agent"),
        tls=True,
        labels={"gpu": "yes"},
        hostname="builder-1",
    )
    opts = options_from_config(section, runner_labels=("x",), data_dir=tmp_path, max_concurrent=6)
    opts.validate()
    assert (opts.name, opts.server, opts.host, opts.port) == (
        "wp-eu",
        "ci.example.com:9000",
        "ci.example.com",
        9000,
    )
    assert (opts.agent_secret, opts.agent_token, opts.tls) == ("s3cret-agent", "", True)
    assert (opts.labels, opts.hostname, opts.max_concurrent) == ({"gpu": "yes"}, "builder-1", 6)
    assert opts.agent_id_path == tmp_path / "woodpecker-wp-eu.agent.json"
    assert "s3cret-agent" not in repr(opts)


def test_another_section_kind_is_refused(tmp_path: Path) -> None:
    section = GitHubConfig(name="gh", owner="acme", token=Secret("t"))
    with pytest.raises(ConfigError, match=r"not a \[woodpecker\] section"):
        options_from_config(section, data_dir=tmp_path, max_concurrent=1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"server": "nohost"}, "server must be host:port"),
        ({"server": "h:0"}, "server must be host:port"),
        ({"agent_token": "t"}, "exactly one of agent_secret or agent_token"),
        ({"agent_secret": ""}, "exactly one of agent_secret or agent_token"),
        ({"max_concurrent": 0}, "max_concurrent must be at least 1"),
        ({"extend_interval": 0.0}, "extend_interval must be positive"),
    ],
)
def test_impossible_options_name_the_problem(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    base: dict[str, object] = {
        "name": "wp",
        "server": "h:9000",
        "agent_secret": "s",
        "state_dir": tmp_path,
    }
    base.update(overrides)
    with pytest.raises(ConfigError, match=message):
        WoodpeckerOptions(**base).validate()  # type: ignore[arg-type]


def _isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions: the order ruff's RUF022 keeps."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_complete() -> None:
    assert woodpecker.__all__ == sorted(woodpecker.__all__, key=_isort_key)
    package = Path(woodpecker.__file__).parent
    modules = {p.stem for p in package.glob("_*.py")}
    public = {n for n in vars(woodpecker) if not n.startswith("_")} - modules - {"annotations"}
    assert set(woodpecker.__all__) == public


async def test_provider_satisfies_its_protocols(fake: FakeWoodpecker, tmp_path: Path) -> None:
    async with provider_for(fake, tmp_path) as provider:
        assert isinstance(provider, Provider)
        assert isinstance(provider, Poll)
        assert isinstance(provider, DrivesJob)
        assert not isinstance(provider, Webhook)
        assert provider.kind == "woodpecker" and provider.name == "wp"
