"""What a provider hands the scheduler once it has claimed a job on the forge."""

from __future__ import annotations

import msgspec

__all__ = ["Claim", "ClaimFile", "ImageMount"]


class ClaimFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file the sandbox gets read-only, for credentials that must never be on argv.

    Attributes:
        path: absolute path inside the sandbox.
        content: the bytes; never logged.
        mode: permission bits inside the sandbox.
    """

    path: str
    content: bytes
    mode: int = 0o400

    def __repr__(self) -> str:
        return f"ClaimFile(path={self.path!r}, content=<{len(self.content)} bytes>)"


class ImageMount(msgspec.Struct, frozen=True, kw_only=True):
    """A directory of another image, mounted read-only into the sandbox.

    It lets a job run in its own image while a tool (a forge's runner) comes from
    another one, without copying the tool into the job image.

    Attributes:
        image: the image reference; pulled like the sandbox's own image.
        source: absolute directory inside *image* ("/" = the whole image).
        target: absolute path inside the sandbox where it appears, read-only.
    """

    image: str
    target: str
    source: str = "/"


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """A job claimed on its forge: the runner identity and how to start it.

    Attributes:
        runner_id: the forge's id for the runner registered for this job ("" if none).
        runner_name: the runner's name; also names the sandbox.
        repo: the job's repository or project.
        env: non-secret environment for the runner inside the sandbox.
        files: read-only files (credentials, runner config) mounted into the sandbox.
        entrypoint: argv of the runner inside the sandbox; empty means the provider drives
            the job itself (see ``DrivesJob``) and the sandbox just stays up.
        image: the image the runner needs, if the provider insists on one.
        workdir: working directory of the entrypoint.
        image_mounts: directories of other images mounted read-only (the runner binary
            when the job runs in its own ``container:`` image).
    """

    runner_id: str
    runner_name: str
    repo: str = ""
    env: dict[str, str] = msgspec.field(default_factory=dict[str, str])
    files: tuple[ClaimFile, ...] = ()
    entrypoint: tuple[str, ...] = ()
    image: str = ""
    workdir: str = ""
    image_mounts: tuple[ImageMount, ...] = ()
