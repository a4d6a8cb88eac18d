"""Scoring API latency at fixed request rates (open loop) on 127.0.0.1, and where one request's time goes.

    python benchmarks/bench_serve.py                       # rates 50,100,200,300,500 req/s; 1 and 2 replicas
    python benchmarks/bench_serve.py --rates 200 --replicas 1 --seconds 5 --no-profile     # a quick look

Each request is one 20-line BGL window of raw lines (``{"sequences": [{"id", "lines"}]}``), parsed with
the saved drain3 state, matched, scored and explained. The artifact is ``outputs/demo/fused`` when
present, else the serving tests' tiny one (``tests/serve_artifact.py``, built into benchmarks/.cache).

Open loop: a separate process (asyncio + aiohttp, keep-alive) sends request i at ``t0 + i / rate``
whether or not earlier ones were answered, and a request's latency runs from its *scheduled* send
time, so queueing anywhere (generator, proxy, replica) shows in p99. ``achieved`` is answered
requests per second over the cell. Per cell the CPU seconds of each process (the Serve proxy, the
replicas, the rest of Ray, the load generator) come from /proc, beside the whole machine's busy
CPU, so a ceiling can be attributed: the machine is shared, and those numbers say with whom.

The profile (``--no-profile`` skips it): each stage of the replica's work timed in this process on
one request (median of ``--profile-requests``), and the round trip of ``GET /v1/health`` (the proxy,
Serve's routing and FastAPI with no work) and of ``POST /v1/score`` one request at a time.
Results: benchmarks/results/bench_serve.json; a markdown table on stdout.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import socket
import statistics
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from collections.abc import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "bench_serve.json"
TICK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- load generator (its own process)


async def _open_loop(url: str, bodies: list[bytes], rate: float, seconds: float, timeout: float) -> list[tuple]:
    """(scheduled, sent, done, status) per request; request i is sent at t0 + i / rate, answered or not."""
    import aiohttp

    loop = asyncio.get_running_loop()
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=1024, force_close=False)
    out: list[tuple] = []

    async def one(session, body: bytes, at: float) -> None:
        sent = loop.time()
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError):
            status = 0
        out.append((at, sent, loop.time(), status))

    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        for _ in range(8):  # open keep-alive connections first, so connecting is not in the measured cell
            await asyncio.gather(*(one(session, bodies[0], loop.time()) for _ in range(8)))
        out.clear()
        t0, n, tasks = loop.time() + 0.1, int(rate * seconds), []
        for i in range(n):
            at = t0 + i / rate
            if at > loop.time():
                await asyncio.sleep(at - loop.time())
            tasks.append(asyncio.create_task(one(session, bodies[i % len(bodies)], at)))
        await asyncio.gather(*tasks)
    return out


def load_generator(url: str, bodies: list[bytes], rate: float, seconds: float, timeout: float) -> dict:
    """Runs in a spawned process: the requests' times and this process's own CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    records = asyncio.run(_open_loop(url, bodies, rate, seconds, timeout))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"records": records, "cpu_s": cpu}


def summarize(records: list[tuple], rate: float) -> dict:
    """p50/p99 from the scheduled send time; achieved = answered (200) requests per second of the cell."""
    ok = [r for r in records if r[3] == 200]
    lat = np.array([r[2] - r[0] for r in ok]) * 1000
    lag = np.array([r[1] - r[0] for r in records]) * 1000
    span = max(r[2] for r in records) - min(r[0] for r in records)
    statuses = Counter("timeout" if r[3] == 0 else str(r[3]) for r in records if r[3] != 200)
    return {"rate": rate, "sent": len(records), "ok": len(ok), "errors": len(records) - len(ok),
            "error_statuses": dict(sorted(statuses.items())),
            "achieved_rps": round(len(ok) / span, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(ok) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(ok) else None,
            "max_ms": round(float(lat.max()), 1) if len(ok) else None,
            "send_lag_p99_ms": round(float(np.percentile(lag, 99)), 1)}


# ----------------------------------------------------------------------------- CPU accounting from /proc


def _descendants(root: int, skip: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid != skip:
            out.append(pid)
            todo += children.get(pid, [])
    return out


def _role(pid: int) -> str:
    """The Serve proxy, a replica, or the rest of Ray (controller, raylet, GCS, idle workers, this driver)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if "ProxyActor" in cmd:
        return "proxy"
    if "ServeReplica" in cmd:
        return "replicas"
    return "ray_other"


def cpu_by_role(root: int, skip: int) -> dict[str, float]:
    """CPU seconds (user + system, all threads) so far of each role in this process tree, less ``skip``'s."""
    out: dict[str, float] = {}
    for pid in _descendants(root, skip):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        role = _role(pid)
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine (every process, ours and others')."""
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(cpu) - cpu[3] - cpu[4]) / TICK  # all but idle and iowait


# ----------------------------------------------------------------------------- profile of one request


def _median_us(fn: Callable[[], object], n: int) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1e6, 1)


def profile_stages(artifact: Path, bodies: list[bytes], n: int) -> dict:
    """Each stage of the replica's work on one request, timed here with one torch thread (a replica's)."""
    import torch
    from fastapi.responses import JSONResponse

    from fusionlog.parsing import event_id, match_templates
    from fusionlog.scoring import Scorer
    from fusionlog.sequences import time_order
    from fusionlog.serve import ScoreRequest, ServeLimits, check_limits, expand_request, reply, score_sequences

    torch.set_num_threads(1)
    scorer, limits, body = Scorer.load(artifact), ServeLimits(), bodies[0]
    data = json.loads(body)
    req = ScoreRequest.model_validate(data)
    (seq,) = expand_request(scorer, req).sequences
    split = scorer.split(seq.items)
    contents = split.column("content").to_pylist()
    order = time_order(split.column("time").to_pylist())
    templates = match_templates(scorer.miner, [contents[i] for i in order])
    parsed = scorer.lines(seq.items, seq.positions)
    (scored,) = scorer.score([parsed])
    answer = {"threshold": scorer.threshold, "sequences": [reply(seq, scored, scorer)]}
    batch = [expand_request(scorer, ScoreRequest.model_validate(json.loads(b))).sequences[0] for b in bodies[:16]]
    stages = {
        "json decode": _median_us(lambda: json.loads(body), n),
        "pydantic validation + limits": _median_us(lambda: check_limits(ScoreRequest.model_validate(data), limits), n),
        "LineSplitter": _median_us(lambda: scorer.split(seq.items), n),
        "time order": _median_us(lambda: time_order(split.column("time").to_pylist()), n),
        "drain3 match": _median_us(lambda: match_templates(scorer.miner, contents), n),
        "event lookup": _median_us(lambda: [scorer.index.get(event_id(t)) for t in templates], n),
        "model forward": _median_us(lambda: scorer.artifact.score([parsed.rows]), n),
        "explanation": _median_us(lambda: (scorer.bottleneck(parsed), scorer.nearest(parsed)), n),
        "reply + JSON encode": _median_us(lambda: JSONResponse({"threshold": scorer.threshold,
                                                                "sequences": [reply(seq, scored, scorer)]}), n),
    }
    return {"stages_us": stages, "stages_sum_us": round(sum(stages.values()), 1),
            "score_sequences_1_us": _median_us(lambda: score_sequences(scorer, [seq]), n),
            "score_sequences_16_per_request_us": round(_median_us(lambda: score_sequences(scorer, batch), n) / 16, 1),
            "flagged": bool(scored.anomalous), "reply_bytes": len(json.dumps(answer))}


def round_trips(base: str, body: bytes, n: int) -> dict:
    """One request at a time (closed loop, keep-alive): what Serve adds around the handler."""
    import http.client

    conn = http.client.HTTPConnection(base.split("//")[1].split(":")[0], int(base.rsplit(":", 1)[1]), timeout=30)

    def call(method: str, path: str, data: bytes | None) -> None:
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status

    return {"health_rtt_us": _median_us(lambda: call("GET", "/v1/health", None), n),
            "score_rtt_us": _median_us(lambda: call("POST", "/v1/score", body), n)}


# ----------------------------------------------------------------------------- driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _artifact(arg: str) -> Path:
    from tests.serve_artifact import build_demo_artifact

    if arg:
        return Path(arg).resolve()
    fused = ROOT / "outputs" / "demo" / "fused"
    if (fused / "drain3_state.bin").is_file():
        return fused
    return build_demo_artifact(ROOT / "benchmarks" / ".cache" / "serve_artifact")


def _wait_healthy(base: str, replicas: int) -> None:
    """Until the route answers (every replica is up once serve.run returns; the proxy may lag a little)."""
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"{base}/v1/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"no healthy answer from {base} with {replicas} replicas")


def run_cell(pool, base: str, bodies: list[bytes], rate: float, seconds: float, timeout: float) -> dict:
    root, generator = os.getpid(), pool.apply(os.getpid)
    cpu0, busy0, t0 = cpu_by_role(root, generator), machine_busy(), time.perf_counter()
    gen = pool.apply(load_generator, (f"{base}/v1/score", bodies, rate, seconds, timeout))
    cpu1, busy1, wall = cpu_by_role(root, generator), machine_busy(), time.perf_counter() - t0
    cpu = {k: round(cpu1.get(k, 0.0) - cpu0.get(k, 0.0), 2) for k in ("proxy", "replicas", "ray_other")}
    cpu["load_generator"] = round(gen["cpu_s"], 2)
    ours = sum(cpu.values())
    row = summarize(gen["records"], rate)
    row["cpu_s"] = cpu
    row["cpu_ms_per_request"] = {k: round(v * 1000 / max(row["ok"], 1), 2) for k, v in cpu.items()}
    row["wall_s"] = round(wall, 1)
    row["machine_busy_cores"] = round((busy1 - busy0) / wall, 2)
    row["others_cores"] = round(max(0.0, (busy1 - busy0) - ours) / wall, 2)
    row["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact-dir", default="")
    p.add_argument("--rates", default="50,100,200,300,500", help="requests per second, one cell each")
    p.add_argument("--replicas", default="1,2")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each cell's schedule")
    p.add_argument("--timeout", type=float, default=10.0, help="a request unanswered after this counts as an error")
    p.add_argument("--max-batch-size", default="", help="comma list to sweep; default: serve_config.yaml's")
    p.add_argument("--batch-wait-ms", default="", help="comma list to sweep; default: serve_config.yaml's")
    p.add_argument("--max-ongoing-requests", type=int, default=None, help="default: serve_config.yaml's")
    p.add_argument("--max-queued-requests", type=int, default=None, help="default: serve_config.yaml's")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--profile-requests", type=int, default=300)
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args()

    import ray
    import yaml
    from ray import serve

    from fusionlog.serve import Scorer as ScorerDeployment
    from fusionlog.serve import ServeArgs
    from tests.serve_artifact import bgl_lines

    artifact = _artifact(a.artifact_dir)
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())["applications"][0]
    batching = config["args"]["batching"]
    sizes = [int(x) for x in a.max_batch_size.split(",")] if a.max_batch_size else [batching["max_batch_size"]]
    waits = ([float(x) / 1000 for x in a.batch_wait_ms.split(",")] if a.batch_wait_ms
             else [batching["batch_wait_timeout_s"]])
    deployment = config["deployments"][0]
    max_ongoing = a.max_ongoing_requests or deployment["max_ongoing_requests"]
    max_queued = a.max_queued_requests or deployment.get("max_queued_requests", -1)
    bodies = [json.dumps({"sequences": [{"id": f"w{k}", "lines": bgl_lines(20, 20 * k)}]}).encode() for k in range(100)]
    rates = [float(x) for x in a.rates.split(",")]
    replica_counts = [int(x) for x in a.replicas.split(",")]

    profile = profile_stages(artifact, bodies, a.profile_requests) if not a.no_profile else None
    ray.init(address="local", num_cpus=max(2, max(replica_counts)), include_dashboard=False, log_to_driver=False)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    pool = multiprocessing.get_context("spawn").Pool(1)
    rows = []
    for replicas in replica_counts:
        for size in sizes:
            for wait in waits:
                args = ServeArgs(artifact_dir=str(artifact),
                                 batching={"max_batch_size": size, "batch_wait_timeout_s": wait})
                app = ScorerDeployment.options(num_replicas=replicas, max_ongoing_requests=max_ongoing,
                                               max_queued_requests=max_queued,
                                               ray_actor_options=deployment["ray_actor_options"]).bind(args)
                serve.run(app, name="bench", route_prefix="/")
                _wait_healthy(base, replicas)
                if profile is not None and "health_rtt_us" not in profile:
                    profile.update(round_trips(base, bodies[0], a.profile_requests))
                run_cell(pool, base, bodies, 50, 2, a.timeout)  # warm-up: first batches, the generator's imports
                for rate in rates:
                    time.sleep(2)  # so an overloaded cell's leftovers do not spill into the next
                    row = {"replicas": replicas, "max_batch_size": size, "batch_wait_ms": wait * 1000,
                           **run_cell(pool, base, bodies, rate, a.seconds, a.timeout)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                serve.delete("bench")
    pool.close()
    serve.shutdown()
    ray.shutdown()

    if profile is not None:
        print("\n| stage (replica, 1 torch thread) | µs |\n|---|---|")
        for k, v in profile["stages_us"].items():
            print(f"| {k} | {v} |")
        print(json.dumps({k: v for k, v in profile.items() if k != "stages_us"}))
    print("\n| replicas | batch max / wait ms | rate req/s | achieved req/s | p50 ms | p99 ms | errors | CPU ms/req proxy / replicas / "
          "Ray other / load gen | machine busy cores (others) | load 1m |\n|" + "---|" * 10)
    for r in rows:
        c = r["cpu_ms_per_request"]
        print(f"| {r['replicas']} | {r['max_batch_size']} / {r['batch_wait_ms']:g} | {r['rate']:g} | {r['achieved_rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | "
              f"{c['proxy']} / {c['replicas']} / {c['ray_other']} / {c['load_generator']} | "
              f"{r['machine_busy_cores']} ({r['others_cores']}) | {r['loadavg_1m']} |")
    result = {"benchmark": "bench_serve", "command": " ".join(["python", "benchmarks/bench_serve.py", *sys.argv[1:]]),
              "artifact": str(artifact), "request": "1 sequence of 20 raw BGL lines", "seconds_per_cell": a.seconds,
              "max_ongoing_requests": max_ongoing, "max_queued_requests": max_queued,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__,
                          "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
              "profile": profile, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
