"""Scoring API throughput and latency on 127.0.0.1: 1 and 2 replicas, several client concurrencies.

    python benchmarks/bench_serve.py                                   # artifact: outputs/demo/model if present
    python benchmarks/bench_serve.py --artifact-dir DIR --requests 400 --concurrency 1,4,16 --replicas 1,2

Bounded: each (replicas, concurrency) cell stops after --requests requests or --duration seconds,
whichever comes first. Each request is one 20-line BGL window of raw lines (parsed, grouped, scored).
Without an artifact, the serving tests' tiny one is built into benchmarks/.cache (about 15 s).
The load generator runs in this process (threads + keep-alive HTTP), so on a small machine it competes
with the replicas for CPU: read the numbers as a lower bound. Results: benchmarks/results/bench_serve.json.
"""
import argparse
import http.client
import json
import platform
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cell(port: int, bodies: list[bytes], concurrency: int, requests: int, duration: float) -> dict:
    """``concurrency`` client threads share a budget of ``requests`` requests and a deadline."""
    lock = threading.Lock()
    issued = [0]
    latencies: list[float] = []
    errors = [0]
    deadline = time.perf_counter() + duration

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if issued[0] >= requests or time.perf_counter() >= deadline:
                    break
                i = issued[0]
                issued[0] += 1
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/score", body=bodies[i % len(bodies)],
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                errors[0] += not ok
        conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors[0], "seconds": round(wall, 2),
            "throughput_rps": round(len(latencies) / wall, 1),
            **{f"p{q}_ms": round(float(np.percentile(lat, q)), 1) for q in (50, 95, 99)}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact-dir", default="")
    p.add_argument("--requests", type=int, default=300, help="requests per cell (upper bound)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per cell (upper bound)")
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--replicas", default="1,2")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_serve.json"))
    a = p.parse_args()

    import ray
    from ray import serve

    from fusionlog.serve import Scorer, ServeArgs
    from tests.serve_artifact import bgl_lines, build_demo_artifact

    artifact = Path(a.artifact_dir) if a.artifact_dir else ROOT / "outputs" / "demo" / "model"
    if not (artifact / "drain3_state.bin").is_file():
        artifact = build_demo_artifact(ROOT / "benchmarks" / ".cache" / "serve_artifact")
    bodies = [json.dumps({"sequences": [{"id": f"w{k}", "lines": bgl_lines(20, 20 * k)}]}).encode() for k in range(100)]
    concurrencies = [int(x) for x in a.concurrency.split(",")]
    replica_counts = [int(x) for x in a.replicas.split(",")]

    ray.init(address="local", num_cpus=max(2, max(replica_counts)), include_dashboard=False, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    rows = []
    args = ServeArgs(artifact_dir=str(artifact))
    for replicas in replica_counts:
        serve.run(Scorer.options(num_replicas=replicas).bind(args), name="bench", route_prefix="/")
        run_cell(port, bodies, 2, 20, 10.0)  # warm-up: imports, first batches, keep-alive connections
        for c in concurrencies:
            row = {"replicas": replicas, **run_cell(port, bodies, c, a.requests, a.duration)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        serve.delete("bench")
    serve.shutdown()
    ray.shutdown()

    header = "| replicas | concurrency | requests | errors | req/s | p50 ms | p95 ms | p99 ms |"
    print("\n" + header + "\n|" + "---|" * 8)
    for r in rows:
        print(f"| {r['replicas']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['throughput_rps']} | "
              f"{r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |")
    result = {"benchmark": "bench_serve", "artifact": str(artifact), "request": "1 sequence of 20 raw BGL lines",
              "batching": args.batching.model_dump(), "requests_per_cell": a.requests, "duration_cap_s": a.duration,
              "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                          "ray": ray.__version__}, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
