"""The cluster path on a simulated two-node Ray cluster (``ray.cluster_utils.Cluster``) on this machine.

What cluster.yaml promises, tested rather than assumed: ``fusionlog prepare`` with the parallel parser
forced on mines its shards on both nodes; the small model's two Ray Train workers run on different
nodes (``train.placement=spread``) with checkpoints on the configured storage path; the scoring app
answers over HTTP from a replica on the node the driver is not on. One directory stands for NFS and
holds every input and output. The driver keeps only its config and runs from a directory of its own
with paths relative to it; Ray's workers run in the job's working_dir copy (as ``ray job submit
--working-dir`` gives them), so a relative path that reached a worker unresolved would fail there.
"""
import json
import os
import shutil
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import ray
import yaml

from fusionlog import cli
from fusionlog.config import load_config
from fusionlog.dataset import load_prepared, load_train_data
from fusionlog.pipeline import export_parsing_state
from fusionlog.scoring import Scorer
from fusionlog.serve import ServeArgs, build_app
from fusionlog.train import fit_small

from tests.conftest import SAMPLE
from tests.serve_artifact import TINY

pytestmark = pytest.mark.slow

HEAD, WORKER = "fusionlog_head", "fusionlog_worker"  # each node's custom resource


@ray.remote(num_cpus=1)
class Hold:
    """Takes a CPU on one node, so that work submitted meanwhile has to use the other's."""

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()


@ray.remote
def where() -> tuple[str, str]:
    return ray.get_runtime_context().get_node_id(), os.getcwd()


class RankNodes(ray.train.UserCallback):
    """Appends the node each rank reported from (train.py puts it in every rank's metrics), per report."""

    def __init__(self, path: str):
        self.path = path

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps([m["node_id"] for m in metrics]) + "\n")


# Ray's workers run in the job's working_dir copy, where this test module is not importable: the callback
# above, and the remote functions, travel by value rather than as a reference to ``tests.e2e.test_cluster``.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _held(resource: str, cpus: int):
    actor = Hold.options(num_cpus=cpus, resources={resource: 0.01}).remote()
    ray.get(actor.node.remote())
    return actor


def _where_ran(kind: str, name: str, count: int) -> list[str]:
    """Node ids Ray's state API recorded for ``count`` tasks or actors of that name (events arrive within seconds)."""
    from ray.util.state import list_actors, list_tasks

    for _ in range(60):
        if kind == "task":
            rows = list_tasks(filters=[("func_or_class_name", "=", name)], detail=True, raise_on_missing_output=False)
        else:
            rows = list_actors(filters=[("class_name", "=", name), ("state", "=", "ALIVE")], detail=True,
                               raise_on_missing_output=False)
        nodes = [r.node_id for r in rows if r.node_id]
        if len(nodes) >= count:
            return nodes
        time.sleep(0.5)
    raise AssertionError(f"Ray's state API lists {len(nodes)} of {count} {kind}s named {name}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two nodes of 2 CPUs, each with its own custom resource; the driver joins with a job working_dir."""
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("cluster")
    job = root / "job"
    job.mkdir()
    (job / "README").write_text("the job's working_dir: Ray's workers run in a copy of it\n")
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {HEAD: 1}, "include_dashboard": True})
    c.add_node(num_cpus=2, resources={WORKER: 1})
    c.wait_for_nodes()
    ray.init(address=c.address, runtime_env={"working_dir": str(job)}, log_to_driver=False)
    nodes = {HEAD: ray.get(where.options(resources={HEAD: 0.01}).remote())[0],
             WORKER: ray.get(where.options(resources={WORKER: 0.01}).remote())[0]}
    yield root, nodes
    from ray import serve

    serve.shutdown()
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def driver(cluster):
    """The driver's own directory (its cwd, holding only the config) and the shared one (``nfs``)."""
    root, nodes = cluster
    nfs, home = root / "nfs", root / "driver"
    (nfs / "logs").mkdir(parents=True)
    home.mkdir()
    for name in ("HDFS_2k.log", "anomaly_label_2k.csv", "BGL_2k.log"):
        shutil.copy(SAMPLE / name, nfs / "logs" / name)
    config = {
        "run": {"output_dir": "../nfs/run"},
        "data": {"sources": ["HDFS"], "target": "BGL", "output_dir": "../nfs/prepared",
                 "systems": {"HDFS": {"inputs": [{"path": "../nfs/logs/HDFS_2k.log",
                                                  "label_file": "../nfs/logs/anomaly_label_2k.csv"}]},
                             "BGL": {"inputs": [{"path": "../nfs/logs/BGL_2k.log"}]}}},
        "ray": {"num_workers": 2},
        "parsing": {"parallel": True, "parallel_min_bytes": 0, "num_shards": 2},
        "train": {"launcher": "ray", "placement": "spread", "storage_path": "../nfs/ray_train"},
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    before = os.getcwd()
    os.chdir(home)
    yield home, nfs, nodes
    os.chdir(before)


def test_workers_run_elsewhere_than_the_driver(driver):
    home, _, nodes = driver
    (head, head_cwd), (worker, worker_cwd) = ray.get([where.options(resources={r: 0.01}).remote()
                                                       for r in (HEAD, WORKER)])
    assert head != worker and {head, worker} == set(nodes.values())
    assert Path(head_cwd).resolve() != home.resolve() and Path(worker_cwd).resolve() != home.resolve()


@pytest.fixture(scope="module")
def prepared(driver):
    """``fusionlog prepare`` with the parallel parser forced on; one CPU held on each node meanwhile, so the
    two shards of each system can only be mined on two nodes."""
    home, nfs, nodes = driver
    holds = [_held(resource, 1) for resource in (HEAD, WORKER)]
    try:
        assert cli.main(["prepare", "--config", "config.yaml", "--quiet"]) == 0
    finally:
        for h in holds:
            ray.kill(h)
    return nfs / "prepared"


def test_prepare_mines_shards_on_both_nodes(prepared, driver):
    home, nfs, nodes = driver
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert {m["parse_mode"] for m in manifest["systems"].values()} == {"ray x2"}
    assert manifest["systems"]["BGL"]["sequences"] == 100 and manifest["systems"]["HDFS"]["lines_read"] == 2000
    assert set(_where_ran("task", "mine_shard", 4)) == set(nodes.values())
    assert (prepared / "BGL" / "drain3_state.bin").is_file()


@pytest.fixture(scope="module")
def trained(prepared, driver):
    """train-small (Ray Train, 2 workers, placement spread) as the CLI runs it, plus a callback noting each rank's node."""
    home, nfs, _ = driver
    cfg = load_config("config.yaml", ["run.progress=false", *TINY])
    data = load_train_data(cfg.data.output_dir, cfg.data.sources, cfg.data.target, cfg.train.val_fraction, cfg.run.seed)
    ranks = nfs / "rank_nodes.jsonl"
    fit = fit_small(cfg, data, callbacks=[RankNodes(str(ranks))])
    export_parsing_state(cfg.data.output_dir, cfg.data.target, fit.artifact_dir)
    return fit, [json.loads(line) for line in ranks.read_text().splitlines()]


def test_train_workers_run_on_two_nodes_with_checkpoints_on_shared_storage(trained, driver):
    home, nfs, nodes = driver
    fit, reports = trained
    assert len(reports) == len(fit.history) == 2  # one report per epoch, from both ranks
    assert all(sorted(r) == sorted(nodes.values()) for r in reports)
    run_dir = nfs / "ray_train" / fit.name
    assert sorted(p.parent.name for p in run_dir.glob("epoch_*/state.pt")) == ["epoch_0000", "epoch_0001"]
    assert fit.artifact_dir == Path("../nfs/run/models") / fit.name  # relative to the driver, as configured
    assert (nfs / "run" / "models" / fit.name / "drain3_state.bin").is_file()
    assert sorted(p.name for p in home.iterdir()) == ["config.yaml"]  # every output went to the shared storage


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scoring_app_answers_from_the_other_node(trained, prepared, driver):
    """The app built from a path relative to the driver; its replica placed on the worker node (the head's
    CPUs held while it starts) loads the artifact from shared storage and scores as the evaluator does."""
    from ray import serve

    home, nfs, nodes = driver
    fit, _ = trained
    port = _free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    hold = _held(HEAD, 2)
    try:
        serve.run(build_app(ServeArgs(artifact_dir=str(fit.artifact_dir))), name="fusionlog", route_prefix="/")
    finally:
        ray.kill(hold)
    assert _where_ran("actor", "ServeReplica:fusionlog:Scorer", 1) == [nodes[WORKER]]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model", timeout=60) as resp:
        assert json.loads(resp.read())["artifact_dir"] == str((nfs / "run" / "models" / fit.name).resolve())
    lines = (SAMPLE / "BGL_2k.log").read_text().splitlines()
    body = {"sequences": [{"id": f"w{k}", "lines": lines[20 * k:20 * k + 20]} for k in range(3)]}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/score", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        reply = json.loads(resp.read())
    probs, _ = Scorer.load(fit.artifact_dir).score_system(load_prepared(prepared, "BGL", read_labels=False))
    assert [s["probability"] for s in reply["sequences"]] == [round(float(p), 6) for p in probs[:3]]
