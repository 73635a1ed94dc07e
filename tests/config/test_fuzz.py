"""Whatever the file holds, loading it either succeeds or raises one ConfigError line."""

from __future__ import annotations

import json
import math
import tempfile
from datetime import date, datetime
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ephemerd._errors import ConfigError
from ephemerd.config import describe, load_config
from ephemerd.config._load import _KINDS  # pyright: ignore[reportPrivateUsage]
from ephemerd.config._settings import Settings  # pyright: ignore[reportPrivateUsage]

# Real key names at every level, so generated documents get past the unknown-key check.
_SECTION_KEYS = {
    f.name: [g.name for g in msgspec.structs.fields(f.type)]
    for f in msgspec.structs.fields(Settings)
    if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct)
}
_PROVIDER_KEYS = {cls.kind: [f.name for f in msgspec.structs.fields(cls)] for cls in _KINDS}
_STRINGS = st.sampled_from(
    [
        "30s",
        "1m30s",
        "0s",
        "-1s",
        "4GiB",
        "1G",
        "x",
        "",
        "127.0.0.1:8080",
        "[::1]:0",
        "wp:9000",
        "https://example.com/",
        "10.0.0.0/8",
        "debug",
        "json",
        "memory",
        "none",
        "acme",
        "a b",
        "-----BEGIN PRIVATE KEY-----",
        "/nonexistent",
        "/dev/null",
        "glrt-x",
        "github",
    ]
) | st.text(alphabet='ab:/.-_ 0é\n"\\', max_size=8)

_SCALARS = (
    _STRINGS
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.booleans()
    | st.dates()
)


_LEAVES = _SCALARS | st.lists(_SCALARS, max_size=3)
_NESTED = {
    "runner": {"retry": ["schedule", "jitter", "max_age", "nope"]},
    "github": {"labels": ["allowed_repos", "required_labels", "nope"]},
}


def _section(name: str, keys: list[str]) -> st.SearchStrategy[dict[str, object]]:
    """A table of *name*'s own keys (plus a stray one), so checks deep inside get reached."""
    sub = {
        k: st.dictionaries(st.sampled_from(v), _LEAVES, max_size=3)
        for k, v in _NESTED.get(name, {}).items()
    }
    extra = [f"{k}_file" for k in ("token", "secret", "agent_token") if k in keys]
    return st.fixed_dictionaries(
        {}, optional={k: sub.get(k, _LEAVES) for k in [*keys, *extra, "nope"]}
    )


_PROVIDERS = {
    kind: _section(kind, keys) | st.lists(_section(kind, keys), max_size=3)
    for kind, keys in _PROVIDER_KEYS.items()
}
_DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        **{name: _section(name, keys) for name, keys in _SECTION_KEYS.items()},
        **_PROVIDERS,
        "compat_single_provider": _SCALARS,
        "x": _LEAVES,
    },
)


def _toml(value: object) -> str:
    """A value in TOML; tables inline, so any nesting is one line."""
    match value:
        case bool():
            return "true" if value else "false"
        case int():
            return str(value)
        case float():
            return "nan" if math.isnan(value) else repr(value)
        case str():
            return json.dumps(value, ensure_ascii=False)
        case date() | datetime():
            return value.isoformat()
        case list():
            return "[" + ", ".join(_toml(v) for v in value) + "]"  # pyright: ignore[reportUnknownVariableType]
        case dict():
            items = value.items()  # pyright: ignore[reportUnknownVariableType, reportUnknownMemberType]
            return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in items) + "}"
        case _:
            raise AssertionError(value)


def _check(text: str, env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(text)
        try:
            config = load_config(path, data_dir=Path(tmp), env=env)
        except ConfigError as error:
            message = str(error)
            assert message.startswith((f"{path}: ",)), message
            assert "\n" not in message
            assert "Traceback" not in message
        else:
            assert describe(config)


_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(_DOCUMENTS, st.sampled_from([{}, {"GITHUB_TOKEN": "ghp_x"}]))
def test_structured_documents(document: dict[str, object], env: dict[str, str]) -> None:
    text = "\n".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in document.items())
    _check(text, env)


@_FUZZ
@given(st.text(alphabet=st.sampled_from("[]{}=\"'.,#\n \\abcgithubrunner0123456789:-_")))
def test_arbitrary_text(text: str) -> None:
    _check(text, {})
