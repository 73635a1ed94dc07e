"""The package front: a sorted, complete ``__all__``, and no imports against the layering."""

from __future__ import annotations

import ast
from pathlib import Path

import ephemerd.config


def test_all_is_sorted_and_complete() -> None:
    names = ephemerd.config.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    public = {n for n in vars(ephemerd.config) if not n.startswith("_")}
    modules = {"annotations"} | {
        n for n in public if type(getattr(ephemerd.config, n)).__name__ == "module"
    }
    assert public - modules == set(names)


def test_config_imports_no_other_layer() -> None:
    """Config is read by every layer, so it leans only on the shared bottom modules."""
    allowed = ("ephemerd._errors", "ephemerd._retry", "ephemerd.capabilities")
    for path in Path(ephemerd.config.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                is_ours = node.module.startswith("ephemerd")
                assert not is_ours or node.module in allowed, f"{path.name}: {node.module}"
