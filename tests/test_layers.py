"""The package's architecture, checked: one-way imports and complete, sorted exports."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import ephemerd

ROOT = Path(ephemerd.__file__).parent

# (importing package, forbidden import prefix, why)
FORBIDDEN = [
    ("ephemerd.capabilities", "ephemerd.forges", "capabilities are below every layer"),
    ("ephemerd.capabilities", "ephemerd.sandbox", "capabilities are below every layer"),
    ("ephemerd.capabilities", "ephemerd.scheduler", "capabilities are below every layer"),
    ("ephemerd.capabilities", "ephemerd.control", "capabilities are below every layer"),
    ("ephemerd.forges", "ephemerd.sandbox", "a forge never knows the sandbox"),
    ("ephemerd.forges", "ephemerd.scheduler", "data flows forge -> scheduler"),
    ("ephemerd.forges", "ephemerd.control", "forges do not drive the control plane"),
    ("ephemerd.sandbox", "ephemerd.forges", "the sandbox never knows a forge"),
    ("ephemerd.sandbox", "ephemerd.scheduler", "data flows scheduler -> sandbox"),
    ("ephemerd.scheduler", "ephemerd.forges", "the scheduler knows forges only by Protocol"),
    ("ephemerd.scheduler", "ephemerd.sandbox", "the scheduler knows the sandbox only by Protocol"),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
    return found


SOURCES = sorted(p for p in ROOT.rglob("*.py") if "_proto" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path: Path) -> None:
    module = _module_name(path)
    for importer, forbidden, why in FORBIDDEN:
        if module == importer or module.startswith(importer + "."):
            bad = [
                name
                for name in _imports(path)
                if name == forbidden or name.startswith(forbidden + ".")
            ]
            assert not bad, f"{module} imports {bad}: {why}"


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return (0, name)
    return (1 if name[:1].isupper() else 2, name)


PACKAGES = sorted(
    name
    for _, name, is_pkg in pkgutil.walk_packages([str(ROOT)], "ephemerd.")
    if is_pkg and "._" not in name
)


@pytest.mark.parametrize("name", PACKAGES)
def test_public_exports_are_sorted_and_resolvable(name: str) -> None:
    package = importlib.import_module(name)
    exported = getattr(package, "__all__", None)
    if exported is None:
        return
    assert list(exported) == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    for attr in exported:
        assert hasattr(package, attr), f"{name}.__all__ names missing {attr!r}"
