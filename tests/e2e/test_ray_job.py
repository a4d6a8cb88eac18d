"""``ray job submit --working-dir .`` against a real ``ray start --head`` cluster, for the prepare job.

Slow (about a minute on 2 cores: cluster start, working-dir upload, job, ray stop): ``pytest -m slow``.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args, timeout=300, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env)


def _stop(temp: Path) -> None:
    """Stop only this head's processes (their command lines name its temp dir): `ray stop` would stop
    every Ray process of the user on the machine, other sessions' clusters included."""
    import psutil

    ours = [p for p in psutil.process_iter(["cmdline"]) if str(temp) in " ".join(p.info["cmdline"] or [])]
    for p in ours:
        p.terminate()
    _, alive = psutil.wait_procs(ours, timeout=15)
    for p in alive:
        p.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node on free ports, with its own temp dir so it never touches another session's cluster."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    port, dashboard, agent, agent_grpc, metrics, runtime_env = (_free_port() for _ in range(6))
    temp = Path("/tmp") / f"rayjob_{os.getpid()}"  # short: Ray's socket paths must stay under 107 characters
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
        if "No available agent" not in job.stderr:
            break
        time.sleep(5)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["systems"]["BGL"]["sequences"] == 100 and manifest["systems"]["HDFS"]["sequences"] == 2200
    for system in ("HDFS", "BGL"):
        for name in ("events.parquet", "sequences.parquet", "drain3_state.bin", "manifest.json"):
            assert (out / system / name).is_file()
