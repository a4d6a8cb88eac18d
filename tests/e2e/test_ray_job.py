"""``ray job submit --working-dir .`` against a real ``ray start --head`` cluster, for the prepare job.

Slow (about 75 s on 2 loaded cores: cluster start, working-dir upload, job, stopping this head only):
``pytest -m slow``. Never `ray stop`: it would stop every Ray cluster of the user on this shared machine.
"""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="stops its head through /proc")]

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args, timeout=300, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # gone meanwhile
        return ""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _processes_of(temp: Path) -> set[int]:
    """This head's processes: those whose command line names its temp dir, and their descendants
    (Ray workers retitle themselves ``ray::...``, so only their parent raylet names the dir)."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    ours = {p for p in pids if str(temp) in _cmdline(p)}
    parents = {p: _parent(p) for p in pids}
    grew = True
    while grew:
        children = {p for p, parent in parents.items() if parent in ours} - ours
        ours |= children
        grew = bool(children)
    return ours


def _stop(temp: Path) -> None:
    """Stop only this head's processes: `ray stop` would stop every Ray process of the user on the
    machine, other sessions' clusters included. Reads /proc (Linux), as psutil is not a dependency."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _processes_of(temp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + 15
        while _processes_of(temp) and time.time() < deadline:
            time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node on free ports, with its own temp dir so it never touches another session's cluster."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    port, dashboard, agent, agent_grpc, metrics, runtime_env = (_free_port() for _ in range(6))
    # short: Ray's socket paths must stay under 107 characters; the suffix: no other pid's dir contains this one
    temp = Path("/tmp") / f"rayjob_{os.getpid()}_head"
    # Ray 2.60: `ray start` turns token auth on when ~/.ray/auth_token exists (any local ray.init() writes
    # one), and `ray job submit` then needs RAY_AUTH_MODE=token too. This throwaway cluster listens on
    # 127.0.0.1 only, so the test runs it without auth, for both commands, whatever the machine holds.
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled"}
    started = _ray("start", "--head", f"--port={port}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
                   "--num-cpus=2", "--disable-usage-stats", f"--temp-dir={temp}",
                   # every port free, so the head never collides with another cluster on this machine
                   f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                   f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    yield f"http://127.0.0.1:{dashboard}", env
    _stop(temp)
    shutil.rmtree(temp, ignore_errors=True)


def test_prepare_job_runs_through_ray_job_submit(cluster, tmp_path):
    address, env = cluster
    out = tmp_path / "prepared"
    for _ in range(24):  # the head's job agent comes up some seconds after `ray start` returns
        job = _ray("job", "submit", "--address", address, "--working-dir", ".", "--",
                   "python", "ray_jobs/prepare.py", "--config", "configs/demo.yaml",
                   f"data.output_dir={out}", "parsing.parallel=false", timeout=600, env=env)
        if "No available agent" not in job.stdout + job.stderr:
            break
        time.sleep(5)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout + job.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["systems"]["BGL"]["sequences"] == 100 and manifest["systems"]["HDFS"]["sequences"] == 2200
    for system in ("HDFS", "BGL"):
        for name in ("events.parquet", "sequences.parquet", "drain3_state.bin", "manifest.json"):
            assert (out / system / name).is_file()
