"""The one-shot commands, run as real subprocesses against a real control socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import trio

from ephemerd import __version__
from ephemerd.capabilities import JobKey, JobState

from .conftest import CLI, ROOT, Daemon, cli_env, start_process


def _one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("error: "), err
    return err.strip()


async def test_status_human(daemon: Daemon) -> None:
    daemon.target.add("github", "1")
    daemon.target.cordon()
    result = await daemon.run("status", check=True)
    out = result.stdout.decode()
    assert f"ephemerd {__version__} (pid {os.getpid()})" in out
    assert "1 active / 4 max, 0 parked" in out
    assert "cordoned (no new jobs)" in out
    assert "forgejo-eu" in out and "backing_off" in out and "503 from forge" in out


async def test_status_json_is_sorted_and_complete(daemon: Daemon) -> None:
    result = await daemon.run("status", "--json", check=True)
    data = json.loads(result.stdout)
    assert list(data) == sorted(data)
    assert data["pid"] == os.getpid()
    assert data["max_concurrent"] == 4
    assert data["uptime_seconds"] >= 0
    assert [p["instance"] for p in data["providers"]] == ["github", "forgejo-eu"]


async def test_global_options_also_after_the_command(daemon: Daemon) -> None:
    result = await trio.run_process(
        [*CLI, "status", "--data-dir", str(daemon.data_dir)],
        capture_stdout=True,
        cwd=ROOT,
        env=cli_env(),
    )
    assert b"ephemerd" in result.stdout


async def test_data_dir_from_environment(daemon: Daemon) -> None:
    env = cli_env() | {"EPHEMERD_DATA_DIR": str(daemon.data_dir)}
    result = await trio.run_process(
        [*CLI, "status", "--json"], capture_stdout=True, cwd=ROOT, env=env
    )
    assert json.loads(result.stdout)["pid"] == os.getpid()


async def test_jobs_table_and_empty(daemon: Daemon) -> None:
    assert (await daemon.run("jobs", check=True)).stdout == b"No jobs.\n"
    daemon.target.add("github", "11", repo="acme/api", runner_name="runner-xyz")
    daemon.target.add("forgejo-eu", "12", state=JobState.PARKED)
    lines = (await daemon.run("jobs", check=True)).stdout.decode().splitlines()
    assert lines[0].split() == ["JOB", "STATE", "REPO", "NAME", "RUNNER", "AGE"]
    assert lines[1].split()[:2] == ["forgejo-eu/12", "parked"]
    assert lines[2].split()[:5] == ["github/11", "running", "acme/api", "build-11", "runner-xyz"]


async def test_jobs_json(daemon: Daemon) -> None:
    daemon.target.add("github", "11")
    data = json.loads((await daemon.run("jobs", "--json", check=True)).stdout)
    assert data[0]["key"] == {"instance": "github", "job_id": "11"}
    assert data[0]["state"] == "running"


async def test_show_one_job(daemon: Daemon) -> None:
    daemon.target.add("github", "11", runner_name="runner-really")
    out = (await daemon.run("jobs", "11", check=True)).stdout.decode()
    assert "job:       github/11" in out
    assert "runner:    runner-really" in out
    data = json.loads((await daemon.run("jobs", "github/11", "--json", check=True)).stdout)
    assert data["runner_name"] == "runner-really"


async def test_unknown_job_is_one_line_exit_1(daemon: Daemon) -> None:
    result = await daemon.run("jobs", "github/404")
    assert result.returncode == 1
    assert _one_error_line(result) == "error: job github/404 not found"


async def test_ambiguous_bare_id_names_the_candidates(daemon: Daemon) -> None:
    daemon.target.add("github", "5")
    daemon.target.add("forgejo-eu", "5")
    result = await daemon.run("jobs", "kill", "5")
    assert result.returncode == 1
    assert "ambiguous (forgejo-eu/5, github/5)" in _one_error_line(result)
    assert daemon.target.killed == []


async def test_kill(daemon: Daemon) -> None:
    daemon.target.add("github", "5")
    result = await daemon.run("jobs", "kill", "github/5", check=True)
    assert result.stdout.decode().startswith("Job github/5 killed (cancelled)")
    assert daemon.target.killed == [JobKey("github", "5")]


async def test_logs_are_copied_byte_for_byte(daemon: Daemon) -> None:
    payload = bytes(range(256)) * 500
    daemon.target.add("github", "5", log=payload)
    result = await daemon.run("jobs", "logs", "5", check=True)
    assert result.stdout == payload


async def test_logs_follow_until_the_job_ends(daemon: Daemon) -> None:
    view = daemon.target.add("github", "5", log=b"first\n")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            process = await start_process(
                nursery, [*CLI, "--data-dir", str(daemon.data_dir), "jobs", "logs", "-f", "5"]
            )
            assert process.stdout is not None
            got = b""
            while b"first\n" not in got:
                got += await process.stdout.receive_some()
            with daemon.target.logs[view.key].open("ab") as f:
                f.write(b"second\n")
            daemon.target.finish(view.key)
            async for chunk in process.stdout:
                got += chunk
            assert await process.wait() == 0
    assert got == b"first\nsecond\n"


async def test_cordon_wait_and_uncordon(daemon: Daemon) -> None:
    view = daemon.target.add("github", "5")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            results: list[subprocess.CompletedProcess[bytes]] = []

            async def drain() -> None:
                results.append(await daemon.run("drain", "--wait", "--timeout", "5m"))

            nursery.start_soon(drain)
            await daemon.target.cordoned_event.wait()
            daemon.target.finish(view.key)
    (result,) = results
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode().splitlines()
    assert out[0] == "Cordoned: daemon stopped claiming new jobs (1 active)."
    assert out[-1].startswith("Drained: no active jobs (waited ")
    assert daemon.target.cordoned
    result = await daemon.run("uncordon", check=True)
    assert result.stdout == b"Uncordoned: daemon is claiming new jobs again (0 active).\n"
    assert not daemon.target.cordoned


async def test_drain_wait_with_nothing_running(daemon: Daemon) -> None:
    result = await daemon.run("drain", "--wait", check=True)
    assert result.stdout.decode().splitlines()[-1] == "Drained: no active jobs."


async def test_drain_wait_times_out_with_a_clear_line(daemon: Daemon) -> None:
    daemon.target.add("github", "5")
    result = await daemon.run("drain", "--wait", "--timeout", "1s")
    assert result.returncode == 1
    assert _one_error_line(result) == (
        "error: drain timed out after 1s with 1 job(s) still running (daemon stays cordoned)"
    )
    assert daemon.target.cordoned


async def test_drain_refuses_a_pid_file_that_names_another_process(daemon: Daemon) -> None:
    async with trio.open_nursery() as nursery:
        bystander = await start_process(nursery, ["sleep", "30"])
        (daemon.data_dir / "ephemerd.pid").write_text(str(bystander.pid))
        result = await daemon.run("drain")
        assert result.returncode == 1
        assert "not signalling" in _one_error_line(result)
        assert bystander.returncode is None  # still alive
        bystander.kill()


async def test_drain_without_daemon_signals_nothing(data_dir: Path) -> None:
    (data_dir / "ephemerd.pid").write_text(str(os.getpid()))  # stale: points at pytest
    result = await trio.run_process(
        [*CLI, "--data-dir", str(data_dir), "drain"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=ROOT,
        env=cli_env(),
    )
    assert result.returncode == 1
    assert _one_error_line(result).startswith("error: ephemerd is not running")


async def test_drain_signals_the_daemon_it_confirmed(tmp_path: Path) -> None:
    """The script daemon handles SIGTERM by exiting 0; drain must reach it."""
    sock = tmp_path / "ephemerd.sock"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await start_process(
                nursery, [*CLI[:1], "-m", "tests.control.fake_daemon", "--socket", str(sock)]
            )
            assert server.stdout is not None
            assert (await server.stdout.receive_some()).startswith(b"ready")
            result = await trio.run_process(
                [*CLI, "--data-dir", str(tmp_path), "drain"],
                capture_stdout=True,
                cwd=ROOT,
                env=cli_env(),
            )
            out = result.stdout.decode()
            assert f"Sending SIGTERM to ephemerd (pid {server.pid})..." in out
            assert await server.wait() == 0
    assert not sock.exists()
    assert not (tmp_path / "ephemerd.pid").exists()


async def test_not_running_is_one_line_exit_1(data_dir: Path) -> None:
    for args in (["status"], ["jobs"], ["jobs", "logs", "1"], ["uncordon"], ["drain", "--wait"]):
        result = await trio.run_process(
            [*CLI, "--data-dir", str(data_dir), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
            env=cli_env(),
        )
        assert result.returncode == 1, args
        sock = data_dir / "ephemerd.sock"
        assert _one_error_line(result) == f"error: ephemerd is not running (no socket at {sock})"


async def test_usage_errors_exit_2(data_dir: Path) -> None:
    for args in (
        ["bogus"],
        ["status", "--nope"],
        ["jobs", "kill"],
        ["drain", "--timeout"],
        ["drain", "--wait", "--timeout", "soon"],
        ["jobs", "7", "--watch"],
    ):
        result = await trio.run_process(
            [*CLI, "--data-dir", str(data_dir), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
            env=cli_env(),
        )
        assert result.returncode == 2, (args, result.stderr)
        _one_error_line(result)


async def test_bad_job_ref_is_one_line(daemon: Daemon) -> None:
    result = await daemon.run("jobs", "kill", "github/")
    assert result.returncode == 1
    assert "invalid job reference" in _one_error_line(result)


async def test_version(data_dir: Path) -> None:
    result = await trio.run_process([*CLI, "version"], capture_stdout=True, cwd=ROOT)
    assert result.stdout.decode() == f"ephemerd {__version__}\n"


async def test_config_check_reports_a_bad_key_exit_2(data_dir: Path) -> None:
    config = data_dir / "config.toml"
    config.write_text("[runner]\nmax_concurrent = 4\nbogus_key = 1\n")
    result = await trio.run_process(
        [*CLI, "--data-dir", str(data_dir), "config", "check"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=ROOT,
        env=cli_env(),
    )
    assert result.returncode == 2
    assert "bogus_key" in _one_error_line(result)


async def test_config_check_prints_the_resolved_config(data_dir: Path) -> None:
    result = await trio.run_process(
        [
            *CLI,
            "--data-dir",
            str(data_dir),
            "-c",
            str(data_dir / "missing.toml"),
            "config",
            "check",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=ROOT,
        env=cli_env(),
    )
    assert result.returncode == 2  # an explicit --config must exist
    _one_error_line(result)
    result = await trio.run_process(
        [*CLI, "--data-dir", str(data_dir), "config", "check"],
        capture_stdout=True,
        cwd=ROOT,
        env=cli_env(),
    )
    assert b"max_concurrent" in result.stdout


async def test_ctrl_c_while_following_exits_130_quietly(daemon: Daemon) -> None:
    daemon.target.add("github", "5", log=b"first\n")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            process = await start_process(
                nursery,
                [*CLI, "--data-dir", str(daemon.data_dir), "jobs", "logs", "-f", "5"],
                stderr=True,
            )
            assert process.stdout is not None and process.stderr is not None
            await process.stdout.receive_some()
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 130
            assert await process.stderr.receive_some() == b""
        await daemon.target.wait_watchers(0)


async def test_serve_rejects_an_unknown_log_format(data_dir: Path) -> None:
    result = await trio.run_process(
        [*CLI, "--data-dir", str(data_dir), "serve", "--log-format", "xml"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=ROOT,
        env=cli_env(),
    )
    assert result.returncode == 2
    assert "xml" in _one_error_line(result)
