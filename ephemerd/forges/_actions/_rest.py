"""The ``/api/v1`` REST client of a Gitea or Forgejo instance (``Authorization: token``).

Scopes are path prefixes: ``/repos/{owner}/{repo}``, ``/orgs/{org}``, ``/user`` or
``/admin``; runners live under ``{scope}/actions/runners``. Payloads are lenient
(unknown fields skipped) because both forges add fields from release to release.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar
from urllib.parse import quote

import httpx
import msgspec

from ephemerd._errors import ForgeNotFound, ForgeProtocolError

from ._wire import map_transport_errors, rest_error

__all__ = [
    "ActionRun",
    "CreatedRunner",
    "ForgejoJob",
    "GiteaJob",
    "RestClient",
    "RunnerInfo",
]

_T = TypeVar("_T")


class CreatedRunner(msgspec.Struct, frozen=True, kw_only=True):
    """Forgejo >= 15 ``POST .../actions/runners``: a runner that needs no Register call."""

    id: int
    uuid: str
    token: str

    def __repr__(self) -> str:
        return f"CreatedRunner(id={self.id}, uuid={self.uuid!r}, token=<redacted>)"


class RunnerInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str = ""
    uuid: str = ""
    status: str = ""
    busy: bool = False
    ephemeral: bool = False


class _RunnerList(msgspec.Struct, frozen=True):
    runners: list[RunnerInfo] = msgspec.field(default_factory=list[RunnerInfo])


class ForgejoJob(msgspec.Struct, frozen=True, kw_only=True):
    """A waiting job as Forgejo's ``.../actions/runners/jobs`` lists it (no claim made)."""

    id: int
    run_id: int = 0
    attempt: int = 0
    handle: str = ""
    name: str = ""
    runs_on: list[str] = msgspec.field(default_factory=list[str])
    status: str = ""
    task_id: int = 0
    repo_id: int = 0
    html_url: str = ""


class GiteaJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job as Gitea's GitHub-style ``/repos/{o}/{r}/actions/jobs`` lists it."""

    id: int
    run_id: int = 0
    name: str = ""
    labels: list[str] = msgspec.field(default_factory=list[str])
    status: str = ""
    runner_name: str = ""
    head_sha: str = ""


class ActionRun(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow run as ``GET /repos/{o}/{r}/actions/runs/{id}`` describes it.

    Forgejo names the workflow file in ``workflow_id`` and the commit in ``commit_sha``;
    Gitea says ``path`` (``build.yml@refs/heads/main``) and ``head_sha``.
    """

    id: int = 0
    workflow_id: str = ""
    path: str = ""
    commit_sha: str = ""
    head_sha: str = ""

    @property
    def workflow_file(self) -> str:
        """The workflow file: a name in the forge's workflow directory, or a full path."""
        return self.workflow_id or self.path.partition("@")[0]

    @property
    def sha(self) -> str:
        return self.commit_sha or self.head_sha


class _GiteaJobs(msgspec.Struct, frozen=True):
    jobs: list[GiteaJob] = msgspec.field(default_factory=list[GiteaJob])
    total_count: int = 0


_ForgejoJobs = list[ForgejoJob] | None  # Forgejo answers null for none


class _Contents(msgspec.Struct, frozen=True):
    content: str = ""
    encoding: str = ""
    type: str = ""


class _Version(msgspec.Struct, frozen=True):
    version: str = ""


class _Token(msgspec.Struct, frozen=True):
    token: str = ""


class RestClient:
    """Typed REST calls; *http*'s ``base_url`` is the instance URL, *token* a PAT ("" = none).

    Args:
        http: the instance's client.
        forge: how messages name the server.
        token: the personal access token; never logged.
    """

    def __init__(self, http: httpx.AsyncClient, *, forge: str, token: str = "") -> None:
        self._http = http
        self._forge = forge
        self._token = token
        self.calls = 0

    def __repr__(self) -> str:
        return f"RestClient(forge={self._forge!r}, token=<redacted>)"

    @property
    def authenticated(self) -> bool:
        return bool(self._token)

    async def send(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """One request below ``/api/v1``; its status is one of *ok*.

        Raises:
            ForgeError: classified from the status (404 and 405 are ``ForgeNotFound``).
        """
        what = f"{self._forge} {method} {path}"
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"token {self._token}"
        self.calls += 1
        async with map_transport_errors(what):
            response = await self._http.request(
                method, f"/api/v1{path}", json=json, params=params, headers=headers
            )
        if response.status_code not in ok:
            raise rest_error(response, what=what)
        return response

    async def _get(self, path: str, kind: type[_T], params: dict[str, str] | None = None) -> _T:
        response = await self.send("GET", path, params=params)
        return _decode(response, kind, what=f"{self._forge} GET {path}")

    async def version(self) -> str:
        """The server's version string (``1.26.0``, ``15.0.0+gitea-1.22.0``)."""
        return (await self._get("/version", _Version)).version

    async def registration_token(self, scope: str) -> str:
        """A runner registration token of *scope*: POST first, then GET.

        Gitea 1.26+ only accepts POST, Gitea 1.22 to 1.23 and Forgejo only GET, 1.24 to 1.25 both.
        """
        path = f"{scope}/actions/runners/registration-token"
        try:
            response = await self.send("POST", path, ok=(200, 201))
        except ForgeNotFound:
            response = await self.send("GET", path)
        token = _decode(response, _Token, what=f"{self._forge} {path}").token
        if not token:
            raise ForgeProtocolError(f"{self._forge} {path}: answer has no token")
        return token

    async def create_runner(
        self, scope: str, *, name: str, ephemeral: bool = True, description: str = ""
    ) -> CreatedRunner:
        """Forgejo >= 15: create a runner (ephemeral: deleted after one task)."""
        body = {"name": name, "description": description, "ephemeral": ephemeral}
        response = await self.send("POST", f"{scope}/actions/runners", json=body, ok=(200, 201))
        return _decode(response, CreatedRunner, what=f"{self._forge} create runner")

    async def get_runner(self, scope: str, runner_id: int) -> RunnerInfo | None:
        """The runner, or ``None`` when the forge no longer has it."""
        try:
            return await self._get(f"{scope}/actions/runners/{runner_id}", RunnerInfo)
        except ForgeNotFound:
            return None

    async def delete_runner(self, scope: str, runner_id: int) -> bool:
        """Delete a runner; ``False`` when it was already gone (404 counts as done)."""
        response = await self.send(
            "DELETE", f"{scope}/actions/runners/{runner_id}", ok=(200, 204, 404)
        )
        return response.status_code != 404

    async def list_runners(self, scope: str) -> list[RunnerInfo]:
        """The runners of *scope* (both a bare list and ``{"runners": [...]}`` are read)."""
        response = await self.send("GET", f"{scope}/actions/runners")
        what = f"{self._forge} list runners"
        if response.content.lstrip()[:1] == b"[":
            return _decode(response, list[RunnerInfo], what=what)
        return _decode(response, _RunnerList, what=what).runners

    async def forgejo_jobs(self, scope: str, labels: Sequence[str] = ()) -> list[ForgejoJob]:
        """Forgejo: jobs waiting for a runner with *labels* (listing claims nothing)."""
        params = {"labels": ",".join(labels)} if labels else None
        response = await self.send("GET", f"{scope}/actions/runners/jobs", params=params)
        try:
            jobs = msgspec.json.decode(response.content, type=_ForgejoJobs)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ForgeProtocolError(f"{self._forge} list jobs: unreadable answer ({exc})") from exc
        return jobs or []

    async def get_run(self, repo: str, run_id: str) -> ActionRun:
        """The workflow run *run_id* of *repo* (``owner/name``)."""
        return await self._get(f"/repos/{repo}/actions/runs/{quote(run_id, safe='')}", ActionRun)

    async def file_content(self, repo: str, path: str, *, ref: str) -> str | None:
        """The base64 content of file *path* at *ref*, or ``None`` when there is none.

        Raises:
            ForgeProtocolError: the path is not a file.
        """
        try:
            contents = await self._get(
                f"/repos/{repo}/contents/{quote(path)}", _Contents, {"ref": ref}
            )
        except ForgeNotFound:
            return None
        if contents.type not in ("", "file") or contents.encoding not in ("", "base64"):
            raise ForgeProtocolError(f"{self._forge} {repo}:{path} is not a base64 file")
        return contents.content

    async def gitea_jobs(self, scope: str, *, status: str = "queued") -> list[GiteaJob]:
        """Gitea: the scope's jobs with *status* (listing claims nothing)."""
        page = await self._get(f"{scope}/actions/jobs", _GiteaJobs, {"status": status})
        return page.jobs


def _decode(response: httpx.Response, kind: type[_T], *, what: str) -> _T:
    try:
        return msgspec.json.decode(response.content, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ForgeProtocolError(f"{what}: unreadable answer ({exc})") from exc
