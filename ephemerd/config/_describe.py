"""``ephemerd config check``: the resolved configuration, readable, with every secret as ``***``.

The first part summarises each provider instance (endpoint, auth, how it claims jobs); the
second lists every resolved setting in TOML form, so an operator can see the defaults that
apply and copy lines back into the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import msgspec

from ._checks import Address, Section
from ._load import Config
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
from ._units import Duration, Size

__all__ = ["describe"]

_CLAIM_MODELS = {
    "github": "a JIT runner registered per job",
    "forgejo": "an ephemeral runner per job, handed that job (one-job --handle)",
    "gitea": "an ephemeral runner registered per job (act_runner --once)",
    "gitlab": "gitlab-runner custom executor; one sandbox per job",
    "woodpecker": "agent protocol; ephemerd runs each workflow's steps itself",
    "memory": "in-process test double (no forge)",
}


def describe(config: Config, *, claim_models: Mapping[str, str] | None = None) -> str:
    """Render *config* for people; no secret value appears in the result.

    Args:
        config: the loaded configuration.
        claim_models: per instance name, the forge's own account of how it will claim
            jobs (the forges know; the config layer only knows the general model).
    """
    lines = ["ephemerd configuration"]
    source = str(config.source) if config.source else "built-in defaults (no config file)"
    lines += [f"  source:    {source}", f"  data dir:  {config.data_dir}", ""]
    lines += _summary(config, claim_models or {})
    lines += ["", f"compat_single_provider = {_value(config.compat_single_provider)}"]
    for provider in config.providers:
        lines += ["", f"[[{provider.kind}]]", *_fields(provider, "")]
    for section in ("runner", "webhook", "metrics", "log", "sandbox"):
        value: Section = getattr(config, section)
        lines += ["", f"[{section}]", *_fields(value, "")]
    return "\n".join(lines) + "\n"


def _summary(config: Config, claim_models: Mapping[str, str]) -> list[str]:
    if not config.providers:
        return [
            "providers: none enabled (add a [github] section with owner and token,",
            "           or another provider section; see the example config)",
        ]
    count = len(config.providers)
    lines = [f"providers: {count} enabled"]
    if config.compat_single_provider:
        lines[0] += " (compat_single_provider: only the highest-precedence one runs)"
    for provider in config.providers:
        lines += [
            f"  {provider.kind} {provider.name!r}"
            + ("  (test double)" if isinstance(provider, MemoryConfig) else ""),
            f"    endpoint:     {_endpoint(provider)}",
            f"    auth:         {_auth(provider)}",
            f"    claim model:  {claim_models.get(provider.name, _CLAIM_MODELS[provider.kind])}",
        ]
    return lines


def _endpoint(provider: ProviderConfig) -> str:
    match provider:
        case GitHubConfig():
            scope = ", ".join(provider.repos) if provider.repos else "all repositories"
            return f"{provider.api_url} (owner {provider.owner}: {scope})"
        case ForgejoConfig() | GiteaConfig():
            if provider.repos:
                scope = f"owner {provider.owner}: {', '.join(provider.repos)}"
            else:
                scope = f"owner {provider.owner}" if provider.owner else "instance-wide"
            return f"{provider.instance_url} ({scope})"
        case GitLabConfig():
            return provider.instance_url
        case WoodpeckerConfig():
            return f"{'grpcs' if provider.tls else 'grpc'}://{provider.server_url}"
        case MemoryConfig():
            return "in-process"


def _auth(provider: ProviderConfig) -> str:
    match provider:
        case GitHubConfig(app_id=int(app_id)):
            key = provider.private_key_path or _origin(provider.private_key)
            return f"GitHub App {app_id}, installation {provider.installation_id}, key {key}"
        case GitHubConfig():
            return f"personal access token {_secret(provider.token)}"
        case ForgejoConfig() | GiteaConfig():
            rest = f", REST token {_secret(provider.api_token)}" if provider.api_token else ""
            return f"registration token {_secret(provider.token)}{rest}"
        case GitLabConfig():
            return f"runner authentication token {_secret(provider.token)}"
        case WoodpeckerConfig():
            if provider.agent_token is not None:
                return f"agent token {_secret(provider.agent_token)}"
            return f"shared agent secret {_secret(provider.agent_secret)}"
        case MemoryConfig():
            return f"shared secret {_secret(provider.secret)}"


def _origin(secret: Secret | None) -> str:
    return secret.source if secret is not None and secret.source else "inline"


def _secret(secret: Secret | None) -> str:
    if secret is None:
        return "none"
    return f"*** ({secret.source})" if secret.source else "***"


def _fields(section: msgspec.Struct, prefix: str) -> list[str]:
    """``key = value`` lines for every field, nested sections as dotted keys."""
    lines: list[str] = []
    for field in msgspec.structs.fields(section):
        value: object = getattr(section, field.name)
        if value is None and field.default is None:
            continue  # an optional key left unset
        if isinstance(value, Section):
            lines += _fields(value, f"{prefix}{field.name}.")
        else:
            lines.append(f"{prefix}{field.name} = {_value(value)}")
    return lines


def _value(value: object) -> str:
    """A value in TOML spelling; secrets as ``"***"``, "none" limits as ``0``."""
    match value:
        case Secret():
            return '"***"'
        case None:
            return "0  # no limit"
        case bool():
            return "true" if value else "false"
        case Duration() | Size() | Address() | Path():
            return json.dumps(str(value))
        case int() | float():
            return repr(value)
        case str():
            return json.dumps(value)
        case tuple() | list():
            return "[" + ", ".join(_value(v) for v in cast("tuple[object, ...]", value)) + "]"
        case dict():
            table = cast("dict[str, object]", value)
            items = ", ".join(f"{json.dumps(k)} = {_value(v)}" for k, v in table.items())
            return "{" + items + "}"
        case _:
            return json.dumps(str(value))
