"""Seconds per LLM labelling request, batch 1 vs batched, for the CPU back-ends.

    python benchmarks/bench_llm.py [--n 6] [--http] [--out outputs/bench_llm.json]

In-process llama-cpp-python runs requests one after another either way (one context); "batched"
there gains only from the shared-prefix KV cache. The http back-end sends a batch through one
Ray Data run (llama_cpp.server still decodes one request at a time). Timings on a shared 2-core
machine vary a lot with the load: read them next to `uptime`.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from fusionlog.config import LLMConfig
from fusionlog.llm import make_llm
from fusionlog.llm.llama_cpp import default_model_path
from fusionlog.teachers import Example, LabelRequest

FAILING = ["Receiving block <*> src: <*> dest: <*>", "java.io.IOException: Connection reset by peer",
           "PacketResponder <*> for block <*> terminating with exception", "machine check interrupt: fatal error"]
FINE = ["Receiving block <*> src: <*> dest: <*>", "Received block <*> of size <*> from <*>",
        "PacketResponder <*> for block <*> terminating", "BLOCK* NameSystem.addStoredBlock: blockMap updated"]


def requests(n: int) -> list[LabelRequest]:
    examples = [Example(FINE, 0, 0.97), Example(FAILING[1:3], 1, 0.91), Example(FINE[:2], 0, 0.88)]
    # distinct sequences (an extra event per request), so the KV cache reuses only the shared prefix
    return [LabelRequest(str(i), "HDFS", (FAILING if i % 2 else FINE) + [f"Verification succeeded for blk_{i}"],
                         examples) for i in range(n)]


def measure(cfg: LLMConfig, reqs: list[LabelRequest]) -> dict:
    backend = make_llm(cfg)
    try:
        t = time.perf_counter()
        for r in reqs:
            backend.answer([r])
        one = (time.perf_counter() - t) / len(reqs)
        t = time.perf_counter()
        results = backend.answer(reqs)
        batched = (time.perf_counter() - t) / len(reqs)
    finally:
        backend.close()
    return {"s_per_request_batch1": round(one, 3), "s_per_request_batched": round(batched, 3),
            "p_anomalous": [round(r.p_anomalous, 4) for r in results], "labels": [r.label for r in results],
            "stats": backend.stats}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--http", action="store_true", help="also start llama_cpp.server and time the http back-end")
    ap.add_argument("--out", default="outputs/bench_llm.json")
    args = ap.parse_args()
    reqs = requests(args.n)
    report = {"n": args.n, "load_avg": os.getloadavg()[0], "results": {}}
    for mode in ("loglik", "generate"):
        report["results"][f"llama_cpp/{mode}"] = measure(LLMConfig(mode=mode), reqs)
        print(mode, report["results"][f"llama_cpp/{mode}"], flush=True)
    if args.http:
        import ray

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "fusionlog.llm.server", "--model", str(default_model_path()),
                                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/v1"
            for _ in range(180):
                try:
                    urllib.request.urlopen(url + "/models", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.5)
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            cfg = LLMConfig(backend="http", mode="generate", base_url=url, constraint="grammar", batch_size=args.n)
            report["results"]["http/generate"] = measure(cfg, reqs)
            print("http", report["results"]["http/generate"], flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
