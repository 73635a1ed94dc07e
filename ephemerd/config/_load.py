"""Read ``config.toml`` into a resolved, validated ``Config``.

Resolution happens here, once: provider sections in table or array form become a flat tuple of
instances, ``<key>_file`` credentials are read, ``GITHUB_TOKEN`` fills in for the first GitHub
instance, relative paths are anchored, and the compatibility mode picks its one provider.
"""

from __future__ import annotations

import functools
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import msgspec

from ._checks import kind_of
from ._decode import config_error, decode_section
from ._providers import (
    ForgejoConfig,
    GiteaConfig,
    GitHubConfig,
    GitLabConfig,
    MemoryConfig,
    ProviderConfig,
    WoodpeckerConfig,
)
from ._secret import Secret
from ._settings import (
    LogConfig,
    MetricsConfig,
    RunnerConfig,
    SandboxConfig,
    Settings,
    WebhookConfig,
)

__all__ = ["COMPAT_PRECEDENCE", "Config", "load_config"]

# The order providers are listed and started in.
_KINDS: tuple[type[ProviderConfig], ...] = (
    GitHubConfig,
    ForgejoConfig,
    GiteaConfig,
    GitLabConfig,
    WoodpeckerConfig,
    MemoryConfig,
)
COMPAT_PRECEDENCE = ("forgejo", "gitea", "gitlab", "woodpecker", "github", "memory")
"""The original's single-provider precedence, used when ``compat_single_provider`` is on."""

_MAX_FILE = 1 << 20
_DEFAULTS_LABEL = "built-in defaults"


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """The whole resolved configuration.

    Attributes:
        providers: every enabled provider instance, GitHub first, then Forgejo, Gitea,
            GitLab, Woodpecker, memory; instances of one kind in file order.
        runner / webhook / metrics / log / sandbox: the daemon-wide sections.
        compat_single_provider: only the highest-precedence provider was kept.
        source: the file read, or ``None`` when the built-in defaults apply.
        data_dir: the daemon's data directory (journal, sockets, logs).
    """

    providers: tuple[ProviderConfig, ...] = ()
    runner: RunnerConfig = msgspec.field(default_factory=RunnerConfig)
    webhook: WebhookConfig = msgspec.field(default_factory=WebhookConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    sandbox: SandboxConfig = msgspec.field(default_factory=SandboxConfig)
    compat_single_provider: bool = False
    source: Path | None = None
    data_dir: Path


def load_config(
    path: Path | None, *, data_dir: Path, env: Mapping[str, str] = os.environ
) -> Config:
    """Load, resolve and validate the configuration.

    Args:
        path: ``--config``; ``None`` means ``<data_dir>/config.toml``, and then a missing
            file means the built-in defaults (still validated, ``GITHUB_TOKEN`` included).
        data_dir: the daemon's data directory.
        env: where ``GITHUB_TOKEN`` is looked up.

    Raises:
        ConfigError: one line naming the file and the dotted key of the first problem.
    """
    data_dir = data_dir.expanduser().absolute()
    file = path.expanduser() if path is not None else data_dir / "config.toml"
    text = _read_config(file, required=path is not None)
    if text is None:
        label, document, base_dir, source = _DEFAULTS_LABEL, {}, data_dir, None
    else:
        label, base_dir, source = str(file), file.absolute().parent, file
        document = _parse_toml(text, label)
    providers = _load_providers(document, label=label, base_dir=base_dir, env=env)
    settings = decode_section(document, Settings, label=label)
    log_dir = data_dir / settings.sandbox.log_dir
    if settings.compat_single_provider and providers:
        providers = (min(providers, key=lambda p: COMPAT_PRECEDENCE.index(p.kind)),)
    return Config(
        providers=providers,
        runner=settings.runner,
        webhook=settings.webhook,
        metrics=settings.metrics,
        log=settings.log,
        sandbox=msgspec.structs.replace(settings.sandbox, log_dir=log_dir),
        compat_single_provider=settings.compat_single_provider,
        source=source,
        data_dir=data_dir,
    )


def _read_config(file: Path, *, required: bool) -> str | None:
    try:
        raw = _read_capped(file)
    except FileNotFoundError:
        if required:
            raise config_error(str(file), "", "no such file") from None
        return None
    except OSError as error:
        raise config_error(str(file), "", f"cannot read: {error.strerror or error}") from None
    if raw is None:
        raise config_error(str(file), "", "larger than 1MiB; is this the config file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        problem = f"not UTF-8 text (bad byte at offset {error.start})"
        raise config_error(str(file), "", problem) from None


def _read_capped(file: Path) -> bytes | None:
    """The file's bytes, or ``None`` if it is over the cap (``/dev/zero`` must not hang us)."""
    with file.open("rb") as stream:
        raw = stream.read(_MAX_FILE + 1)
    return None if len(raw) > _MAX_FILE else raw


def _parse_toml(text: str, label: str) -> dict[str, object]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise config_error(label, "", f"invalid TOML: {error}") from None
    except RecursionError:
        raise config_error(label, "", "invalid TOML: nested too deeply") from None


def _load_providers(
    document: dict[str, object], *, label: str, base_dir: Path, env: Mapping[str, str]
) -> tuple[ProviderConfig, ...]:
    """Pop every provider section from *document* and decode its instances."""
    found: list[tuple[type[ProviderConfig], str, dict[str, object]]] = []
    for cls in _KINDS:
        found += [(cls, where, t) for where, t in _instances(cls.kind, document, label)]
    env_token = env.get("GITHUB_TOKEN", "")
    if not found and env_token:
        raise config_error(
            label,
            "github.owner",
            "required (GITHUB_TOKEN is set, which enables GitHub when no provider is "
            "configured; add a [github] section with owner)",
        )
    providers: list[ProviderConfig] = []
    names: dict[str, str] = {}
    for cls, where, raw in found:
        table = _resolve_secret_files(raw, cls, where=where, label=label, base_dir=base_dir)
        ca_file = table.get("ca_file")
        if cls is WoodpeckerConfig and isinstance(ca_file, str) and ca_file:
            table["ca_file"] = str(base_dir / Path(ca_file).expanduser())
        first_github = cls is GitHubConfig and where in ("github", "github[0]")
        if first_github and env_token and not {"token", "app_id"} & table.keys():
            table["token"] = Secret(env_token, source="env GITHUB_TOKEN")
        provider = decode_section(table, cls, label=label, where=where)
        if provider.name in names:
            raise config_error(
                label,
                f"{where}.name",
                f"duplicate instance name {provider.name!r} (also used by "
                f"{names[provider.name]}); give each instance its own name",
            )
        names[provider.name] = where
        providers.append(provider)
    return tuple(providers)


def _instances(
    kind: str, document: dict[str, object], label: str
) -> list[tuple[str, dict[str, object]]]:
    """``[kind]`` gives one instance, ``[[kind]]`` one per table; each with its dotted key."""
    value = document.pop(kind, None)
    if value is None:
        return []
    if isinstance(value, dict):
        tables: list[tuple[str, object]] = [(kind, value)]
    elif isinstance(value, list):
        items = cast("list[object]", value)
        tables = [(f"{kind}[{i}]", item) for i, item in enumerate(items)]
    else:
        problem = f"expected a table or an array of tables, got {kind_of(value)}"
        raise config_error(label, kind, problem)
    out: list[tuple[str, dict[str, object]]] = []
    for where, table in tables:
        if not isinstance(table, dict):
            raise config_error(label, where, f"expected a table, got {kind_of(table)}")
        if "kind" in table:
            raise config_error(label, f"{where}.kind", "unknown key")
        out.append((where, dict(cast("dict[str, object]", table))))
    return out


def _resolve_secret_files(
    table: dict[str, object],
    cls: type[ProviderConfig],
    *,
    where: str,
    label: str,
    base_dir: Path,
) -> dict[str, object]:
    """Replace ``<key>_file = "/path"`` by the file's content as ``<key>``.

    GitHub's ``private_key_path`` works the same way for ``private_key`` and stays set, so
    ``config check`` can show where the key came from.
    """
    secrets = _secret_fields(cls)
    for key in list(table):
        target = key.removesuffix("_file") if key.endswith("_file") else ""
        if cls is GitHubConfig and key == "private_key_path":
            target = "private_key"
        if target not in secrets:
            continue
        if target in table:
            raise config_error(label, f"{where}.{key}", f"set either {target} or {key}, not both")
        file = table[key]
        if not isinstance(file, str) or not file:
            raise config_error(
                label, f"{where}.{key}", f"expected a file path, got {kind_of(file)}"
            )
        path = base_dir / Path(file).expanduser()
        table[target] = _read_secret(path, label=label, key=f"{where}.{key}")
        if key == "private_key_path":
            table[key] = str(path)
        else:
            del table[key]
    return table


def _read_secret(path: Path, *, label: str, key: str) -> Secret:
    try:
        raw = _read_capped(path)
        text = None if raw is None else raw.decode("utf-8").strip()
    except OSError as error:
        raise config_error(label, key, f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise config_error(label, key, f"{path} is not UTF-8 text") from None
    if text is None:
        raise config_error(label, key, f"{path} is larger than 1MiB")
    if not text:
        raise config_error(label, key, f"{path} is empty")
    return Secret(text, source=f"file {path}")


@functools.cache
def _secret_fields(cls: type[ProviderConfig]) -> frozenset[str]:
    names: set[str] = set()
    for field in msgspec.structs.fields(cls):
        if field.type is Secret or Secret in getattr(field.type, "__args__", ()):
            names.add(field.name)
    return frozenset(names)
