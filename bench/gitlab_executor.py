"""Benchmark of gitlab-runner's custom executor on real sandboxes; prints one JSON object.

Measures, in one run on this host (root needed), with the busybox host image and no
job network:

- ``bare_create_start_ms``: the sandbox alone: create + start of a keep-alive sandbox
  (median), the floor under ``prepare``;
- ``bare_exec_ms``: the sandbox alone: ``exec`` of the stage shell fed ``true`` on stdin
  (median), the floor under a run stage;
- ``prepare_ready_ms``: ``ExecutorPrepare`` over the control socket of a running daemon,
  request to answer (admission, slot, sandbox create + start), median and p90;
- ``stage_true_ms``: ``ExecutorRun`` of a ``true`` script, request to exit status, median;
  ``stage_overhead_ms`` is that minus ``bare_exec_ms``;
- ``cleanup_ms``: ``ExecutorCleanup`` until the sandbox is destroyed, median;
- ``cli_<stage>_ms`` (config, prepare, run, cleanup): each stage through the console
  script's entry, as gitlab-runner calls it (a new Python process per stage, with a
  bytecode cache as an installed package has), for jobs of their own; ``cli_stage_true_ms``
  is ``cli_run_ms`` (a ``true`` script);
- ``cli_startup_floor_ms``: ``python -c pass`` with the same interpreter, run alternately
  with the stages so both see the same load; ``cli_run_overhead_ms`` and
  ``cli_config_overhead_ms`` are the medians above it, and ``cli_run_cpu_ms`` /
  ``cli_floor_cpu_ms`` the median CPU time (user + sys) of each, which the host's other
  load disturbs less.

Usage: ``python bench/gitlab_executor.py [--jobs 10] [--cli-runs 5] [--data-dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from ephemerd.capabilities import SandboxSpec
from ephemerd.control import open_control_client
from ephemerd.forges.gitlab import SHELL_ARGV
from ephemerd.sandbox import HOST_IMAGE, ImageStore, build_host_image, open_sandbox_backend
from ephemerd.sandbox._embedded import open_containerd

_CONFIG = """
[sandbox]
network = "none"

[[gitlab]]
name = "gitlab"
instance_url = "http://127.0.0.1:9"
token = "glrt-bench"
supervise = false
default_image = "{image}"

[runner]
max_concurrent = 4
shutdown_timeout = "30s"
"""


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median": round(statistics.median(ordered) * 1000, 1),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
        "n": len(ordered),
    }


async def _discard(stream: str, chunk: bytes) -> None:
    del stream, chunk


async def bare(data_dir: Path, runs: int) -> dict[str, object]:
    """The sandbox alone: keep-alive create + start, and one stage-shell exec of ``true``."""
    creates: list[float] = []
    execs: list[float] = []
    async with open_containerd(data_dir=data_dir) as client:
        images = ImageStore(client)
        await build_host_image(images, HOST_IMAGE, work_dir=data_dir / "tmp")
        async with open_sandbox_backend(client, data_dir=data_dir, images=images) as backend:
            for i in range(runs + 1):
                began = time.perf_counter()
                handle = await backend.create(
                    SandboxSpec(
                        name=f"bench-gl-{i}",
                        image=HOST_IMAGE,
                        argv=("sleep", "infinity"),
                        network="none",
                    )
                )
                try:
                    await handle.start()
                    created = time.perf_counter() - began
                    began = time.perf_counter()
                    code = await handle.exec(SHELL_ARGV, stdin=b"true\n", output=_discard)
                    executed = time.perf_counter() - began
                    assert code == 0, code
                finally:
                    await handle.destroy()
                if i:  # the first run warms the page cache
                    creates.append(created)
                    execs.append(executed)
    return {"bare_create_start_ms": _ms(creates), "bare_exec_ms": _ms(execs)}


async def daemon(data_dir: Path, jobs: int, cli_runs: int) -> dict[str, object]:
    (data_dir / "config.toml").write_text(_CONFIG.format(image=HOST_IMAGE))
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "serve"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    socket = data_dir / "ephemerd.sock"
    try:
        async with trio.open_nursery() as nursery:
            ready = trio.Event()
            nursery.start_soon(_follow_log, process, ready)
            with trio.fail_after(120):
                await ready.wait()
            result = await _measure(socket, data_dir, jobs, cli_runs)
            process.terminate()  # a drain; the log follower ends with the daemon
        return result
    finally:
        process.terminate()
        with trio.move_on_after(60):
            await process.wait()
        if process.returncode is None:
            process.kill()


async def _follow_log(process: trio.Process, ready: trio.Event) -> None:
    """Set *ready* once the daemon serves; keep draining its log so it never blocks."""
    assert process.stderr is not None
    seen = b""
    async for chunk in process.stderr:
        if not ready.is_set():
            seen += chunk
            if b"serving 1 provider" in seen:
                ready.set()
    if not ready.is_set():
        raise RuntimeError("the daemon exited before serving:\n" + seen.decode(errors="replace"))


async def _measure(socket: Path, data_dir: Path, jobs: int, cli_runs: int) -> dict[str, object]:
    prepares: list[float] = []
    stages: list[float] = []
    cleanups: list[float] = []
    async with open_control_client(socket) as client:
        for i in range(jobs + 1):
            job = str(7000 + i)
            env = {"CI_JOB_ID": job, "CI_PROJECT_PATH": "bench/app", "CI_JOB_NAME": "b"}
            began = time.perf_counter()
            await client.executor_prepare(job, variables=env)
            prepared = time.perf_counter() - began
            timings: list[float] = []
            for _ in range(5):
                began = time.perf_counter()
                async with client.executor_run(job, script=b"true\n", stage="step_x") as out:
                    async for _item in out:
                        pass
                timings.append(time.perf_counter() - began)
            began = time.perf_counter()
            await client.executor_cleanup(job)
            cleaned = time.perf_counter() - began
            if i:
                prepares.append(prepared)
                stages.extend(timings)
                cleanups.append(cleaned)
    return {
        "prepare_ready_ms": _ms(prepares),
        "stage_true_ms": _ms(stages),
        "cleanup_ms": _ms(cleanups),
        **await _cli_stages(data_dir, cli_runs),
    }


# The console script's own entry (``python -m`` would add runpy's imports).
_ENTRY = "import sys; from ephemerd.cli import main; sys.exit(main())"
_RUNS_PER_JOB = 3


async def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of *argv*, which must succeed."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    began = time.perf_counter()
    result = await trio.run_process(argv, env=env, capture_stdout=True, check=False)
    wall = time.perf_counter() - began
    assert result.returncode == 0, result
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, usage.ru_utime + usage.ru_stime - cpu


async def _cli_stages(data_dir: Path, runs: int) -> dict[str, object]:
    """Each executor stage through the CLI for *runs* jobs, alternating with the floor."""
    script = data_dir / "stage-script"
    script.write_text("true\n")
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base["PYTHONPYCACHEPREFIX"] = str(data_dir / "pycache")
    cli = [sys.executable, "-c", _ENTRY, "--data-dir", str(data_dir), "gitlab-executor"]
    stages = [
        ("config", ()),
        ("prepare", ()),
        *[("run", (str(script), "build_script"))] * _RUNS_PER_JOB,
        ("cleanup", ()),
    ]
    wall: dict[str, list[float]] = {"config": [], "prepare": [], "run": [], "cleanup": []}
    cpu: dict[str, list[float]] = {"run": [], "floor": []}
    floor: list[float] = []
    for i in range(runs + 1):  # the first job warms the bytecode cache
        env = {**base, "CUSTOM_ENV_CI_JOB_ID": str(8000 + i), "CUSTOM_ENV_CI_JOB_NAME": "b"}
        for stage, extra in stages:
            seconds, cpu_seconds = await _timed([*cli, stage, *extra], env)
            floor_seconds, floor_cpu = await _timed([sys.executable, "-c", "pass"], base)
            if i:
                wall[stage].append(seconds)
                floor.append(floor_seconds)
                if stage == "run":
                    cpu["run"].append(cpu_seconds)
                    cpu["floor"].append(floor_cpu)
    result: dict[str, object] = {f"cli_{stage}_ms": _ms(v) for stage, v in wall.items()}
    result["cli_stage_true_ms"] = result["cli_run_ms"]
    result["cli_startup_floor_ms"] = _ms(floor)
    for stage in ("run", "config"):
        overhead = statistics.median(wall[stage]) - statistics.median(floor)
        result[f"cli_{stage}_overhead_ms"] = round(overhead * 1000, 1)
    for name, values in cpu.items():
        result[f"cli_{name}_cpu_ms"] = round(statistics.median(values) * 1000, 1)
    return result


async def main(args: argparse.Namespace) -> dict[str, object]:
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="ephemerd-bench-gl-"))
    (data_dir / "tmp").mkdir(parents=True, exist_ok=True)
    try:
        result: dict[str, object] = {"load": os.getloadavg()[0]}
        result.update(await bare(data_dir, args.jobs))
        result.update(await daemon(data_dir, args.jobs, args.cli_runs))
        stage = result["stage_true_ms"]
        floor = result["bare_exec_ms"]
        assert isinstance(stage, dict) and isinstance(floor, dict)
        result["stage_overhead_ms"] = round(stage["median"] - floor["median"], 1)  # pyright: ignore[reportUnknownArgumentType]
        return result
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--data-dir", default="")
    print(json.dumps(trio.run(main, parser.parse_args()), sort_keys=True))
