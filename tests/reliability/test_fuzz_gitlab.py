"""Hostile input at GitLab's parsers: Job Hook deliveries and the custom executor's environment.

A delivery without the hook's token never yields a job; with it, any body gets an answer
(never an exception). The executor's ``CUSTOM_ENV_*`` variables, set by whoever wrote the
job, always turn into variables and runner tags without raising.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from ephemerd.capabilities import WebhookRequest
from ephemerd.cli._gitlab import ENV_PREFIX, job_variables
from ephemerd.forges.gitlab._hook import HookReceiver
from ephemerd.forges.gitlab._job import image_allowed, runner_tags

from ._strategies import EDGE_TEXTS, FUZZ, JSON, encoded, near

TOKEN = "gitlab-hook-token"
_JOB_HOOK = {
    "object_kind": "build",
    "build_id": 7,
    "build_name": "test",
    "build_stage": "test",
    "build_status": "pending",
    "build_tags": ["docker"],
    "pipeline_id": 3,
    "project_id": 2,
    "project_name": "Acme / App",
    "repository": {"homepage": "https://gitlab.example/acme/app"},
    "runner": {"id": 5, "description": "ephemerd"},
}
_BODIES = encoded(near(_JOB_HOOK) | JSON)
_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "x-gitlab-token": st.sampled_from([TOKEN, "", "wrong", TOKEN + " "]) | st.text(max_size=20),
        "x-gitlab-event": st.sampled_from(["Job Hook", "Build Hook", "Push Hook", ""]),
        "x-gitlab-event-uuid": st.text(max_size=10),
    },
)


@FUZZ
@given(st.sampled_from(["POST", "GET", "post", ""]), _HEADERS, _BODIES)
def test_job_hooks_are_answered_and_only_genuine_ones_yield_a_job(
    method: str, headers: dict[str, str], body: bytes
) -> None:
    reply, hook = HookReceiver("gl", TOKEN).handle(
        WebhookRequest(method=method, headers=headers, body=body)
    )
    assert 200 <= reply.status < 600 and reply.status != 500
    if headers.get("x-gitlab-token") != TOKEN or method.upper() != "POST":
        assert hook is None and reply.status in (403, 405)
    if hook is not None:
        assert reply.status == 200 and headers.get("x-gitlab-event") in ("Job Hook", "Build Hook")


_VALUES = (
    st.text(max_size=30)
    | st.sampled_from(EDGE_TEXTS)
    | encoded(JSON).map(lambda b: b.decode("utf-8", errors="replace"))
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from([f"{ENV_PREFIX}CI_RUNNER_TAGS", f"{ENV_PREFIX}CI_JOB_IMAGE", "PATH", ""])
        | st.text(max_size=12).map(lambda k: ENV_PREFIX + k),
        _VALUES,
        max_size=6,
    ),
    st.lists(st.text(alphabet="*?[]!abc/:", max_size=8), max_size=3),
)
@example({f"{ENV_PREFIX}CI_RUNNER_TAGS": "[" * 100_000 + "]" * 100_000}, [])
@example({f"{ENV_PREFIX}CI_RUNNER_TAGS": '[null, 1, "", " a ", {"b": 2}]'}, ["*"])
def test_executor_environment_never_raises(env: dict[str, str], patterns: list[str]) -> None:
    variables = job_variables(env)
    assert all(not key.startswith(ENV_PREFIX) or key == "" for key in variables) or variables
    tags = runner_tags(variables)
    assert all(isinstance(tag, str) and tag == tag.strip() and tag for tag in tags)
    assert isinstance(image_allowed(variables.get("CI_JOB_IMAGE", ""), patterns), bool)
