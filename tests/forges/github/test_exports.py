"""The package front: a sorted, complete __all__, and no import of the sandbox layer."""

from __future__ import annotations

import ast
from pathlib import Path

import ephemerd.forges.github as github
from ephemerd.capabilities import Poll, Provider, RateLimitReporter, RunnerNameReporter, Webhook
from tests.fakes.github import FakeGitHub

from .conftest import provider_for

PACKAGE = Path(github.__file__).parent


def _isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions: the order ruff's RUF022 keeps."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_complete() -> None:
    assert github.__all__ == sorted(github.__all__, key=_isort_key)
    public = {name for name in vars(github) if not name.startswith("_")}
    modules = {p.stem for p in PACKAGE.glob("_*.py")}
    assert public - modules - {"annotations"} == set(github.__all__)


def test_no_module_imports_the_sandbox_or_scheduler() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = ("." * node.level) + (node.module or "")
            elif isinstance(node, ast.Import):
                target = ",".join(alias.name for alias in node.names)
            else:
                continue
            assert "sandbox" not in target and "scheduler" not in target, (path.name, target)


async def test_provider_satisfies_every_capability(fake: FakeGitHub) -> None:
    async with provider_for(fake) as provider:
        for protocol in (Provider, Poll, Webhook, RunnerNameReporter, RateLimitReporter):
            assert isinstance(provider, protocol), protocol.__name__
        assert provider.kind == "github" and provider.name == "gh"
        assert provider.default_images == {"linux": "ghcr.io/actions/actions-runner:latest"}
