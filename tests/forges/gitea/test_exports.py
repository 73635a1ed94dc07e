"""The package fronts: sorted, complete ``__all__``; no import of the sandbox or scheduler."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGES = ["ephemerd.forges._actions", "ephemerd.forges.forgejo", "ephemerd.forges.gitea"]


def _isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions: the order ruff's RUF022 keeps."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__, key=_isort_key)
    package = Path(str(module.__file__)).parent
    modules = {p.stem for p in package.glob("_*.py")}
    public = {n for n in vars(module) if not n.startswith("_")}
    assert public - modules - {"annotations"} == set(module.__all__)


@pytest.mark.parametrize("name", PACKAGES)
def test_no_module_imports_the_sandbox_or_scheduler(name: str) -> None:
    package = Path(str(importlib.import_module(name).__file__)).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = ("." * node.level) + (node.module or "")
            elif isinstance(node, ast.Import):
                target = ",".join(alias.name for alias in node.names)
            else:
                continue
            assert "sandbox" not in target and "scheduler" not in target, (path.name, target)


async def test_front_opens_a_provider_of_its_kind() -> None:
    from ephemerd.capabilities import Poll, Provider
    from ephemerd.forges import forgejo, gitea

    for module, opener in (
        (forgejo, forgejo.open_forgejo_provider),
        (gitea, gitea.open_gitea_provider),
    ):
        options = module.ActionsOptions(
            name="x", instance_url="http://127.0.0.1:9", registration_token="t"
        )
        async with opener(options) as provider:
            assert isinstance(provider, Provider) and isinstance(provider, Poll)
            assert provider.kind == module.FLAVOUR.kind
            assert provider.default_images == {"linux": module.DEFAULT_IMAGE}
            assert "'t'" not in repr(provider)
