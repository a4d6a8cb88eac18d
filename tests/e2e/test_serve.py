"""Real Ray Serve: the HTTP proxy on 127.0.0.1 scoring BGL lines, the 4xx paths, health, model, OpenAPI,
a replica whose model fails to load, batching across concurrent callers, and serve_config.yaml."""
import json
import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from fusionlog.serve import ServeArgs, build_app

from tests.conftest import ROOT, SAMPLE
from tests.serve_artifact import bgl_lines, build_demo_artifact


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, body=None, method: str = "GET") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory):
    return build_demo_artifact(tmp_path_factory.getbasetemp() / "serve_artifact")


@pytest.fixture(scope="module")
def server(ray_local, artifact_dir, tmp_path_factory):
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    limits = {"max_body_bytes": 20_000, "max_lines_per_request": 100, "max_line_chars": 2_000,
              "max_sequences_per_request": 10}
    serve.run(build_app(ServeArgs(artifact_dir=str(artifact_dir), limits=limits)), name="fusionlog", route_prefix="/")
    broken = ServeArgs(artifact_dir=str(tmp_path_factory.mktemp("no_model")))
    serve.run(build_app(broken), name="broken", route_prefix="/broken")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def test_health_model_and_openapi(server, artifact_dir):
    status, body = _call(f"{server}/v1/health")
    assert status == 200 and body["status"] == "ok" and body["raw_lines"] is True
    status, info = _call(f"{server}/v1/model")
    assert status == 200 and info["sources"] == ["HDFS"] and info["target"] == "BGL"
    assert info["artifact_dir"] == str(artifact_dir) and info["events"] == 122 and info["limits"]["max_line_chars"] == 2000
    assert info["data_counts"]["target"] == 100 and info["system"]["grouping"]["window_size"] == 20
    status, spec = _call(f"{server}/openapi.json")
    assert status == 200 and "/v1/score" in spec["paths"] and "ScoreRequest" in spec["components"]["schemas"]


def test_failed_model_load_shows_in_health(server):
    status, body = _call(f"{server}/broken/v1/health")
    assert status == 503 and body["status"] == "unavailable" and "missing model.pt" in body["reason"]
    status, body = _call(f"{server}/broken/v1/score", {"lines": bgl_lines(3)})
    assert status == 503 and "model not loaded" in body["error"]


def test_score_raw_lines_and_sequences(server):
    status, body = _call(f"{server}/v1/score", {"lines": bgl_lines(45, 300) + ["not a BGL line"]})
    assert status == 200, body
    assert [s["id"] for s in body["sequences"]] == ["request#w0", "request#w1", "request#w2"]
    assert body["ungrouped_lines"] == [{"line": 45, "reason": "format_mismatch"}]
    for s in body["sequences"]:
        assert 0.0 <= s["probability"] <= 1.0 and s["label"] in ("normal", "anomalous")
        assert s["threshold"] == body["threshold"] and (s["bottleneck"] is not None) == (s["label"] == "anomalous")
    status, body = _call(f"{server}/v1/score", {"sequences": [{"id": "a", "lines": bgl_lines(20, 0)},
                                                              {"id": "b", "events": ["generating <*>"]}]})
    assert status == 200 and [s["id"] for s in body["sequences"]] == ["a", "b"]
    assert body["sequences"][1]["known_events"] == 1 and "ungrouped_lines" not in body


@pytest.mark.parametrize("body, status, message", [
    (b'{"lines": [', 400, "not valid JSON"),
    ({"lines": [1]}, 422, "lines.0: Input should be a valid string"),
    ({"sequences": []}, 422, "'sequences' is empty"),
    ({"sequences": [{"id": "x", "lines": []}]}, 422, "'lines' is empty"),
    ({"lines": ["x"] * 101}, 413, "limits.max_lines_per_request is 100"),
    ({"lines": ["x" * 2001]}, 413, "limits.max_line_chars is 2000"),
    ({"lines": ["x" * 1000] * 30}, 413, "limits.max_body_bytes"),
    ({"sequences": [{"lines": ["x"]}] * 11}, 413, "limits.max_sequences_per_request is 10"),
    ({"lines": ["not a BGL line"] * 3}, 200, None),  # nothing parses: reported, not an error
])
def test_bad_requests_get_4xx_and_the_replica_survives(server, body, status, message):
    got, reply = _call(f"{server}/v1/score", body)
    assert got == status, reply
    if message:
        assert message in reply["error"]
    else:
        assert reply["sequences"] == [] and [u["reason"] for u in reply["ungrouped_lines"]] == ["format_mismatch"] * 3
    assert _call(f"{server}/v1/health")[0] == 200


def test_concurrent_callers_get_their_own_answers(server):
    def one(i):
        return _call(f"{server}/v1/score", {"sequences": [{"id": f"r{i}", "lines": bgl_lines(20, 20 * i)}]})

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(one, range(16)))
    assert all(status == 200 for status, _ in replies)
    assert [body["sequences"][0]["id"] for _, body in replies] == [f"r{i}" for i in range(16)]
    alone = one(3)[1]["sequences"][0]["probability"]
    assert replies[3][1]["sequences"][0]["probability"] == alone


def test_local_testing_mode_in_process(artifact_dir):
    """The deployment in-process (no cluster, no HTTP) through a handle: fast checks of load, health and metadata.

    Scoring is left to the HTTP tests: in Ray 2.60 ``@serve.batch`` reads the replica context when its
    queue starts, which local testing mode does not provide (RayServeException).
    """
    from ray import serve

    handle = serve.run(build_app(ServeArgs(artifact_dir=str(artifact_dir))), _local_testing_mode=True)
    assert handle.health.remote().result()["status"] == "ok"
    info = handle.model_metadata.remote().result()
    assert info["target"] == "BGL" and info["raw_lines"] and info["batching"]["max_batch_size"] == 16


def test_serve_config_yaml_is_valid_and_builds():
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "serve_config.yaml").read_text()))
    (app,) = config.applications
    assert app.import_path == "fusionlog.serve:build_app" and app.route_prefix == "/"
    args = ServeArgs.model_validate(app.args)
    assert args.artifact_dir == "outputs/demo/fused"  # what the demo's `fusionlog train` writes
    assert [d.name for d in app.deployments] == ["Scorer"]


def test_training_side_and_http_give_identical_event_ids_and_scores(server, artifact_dir):
    """One scoring path: every window prepare made of the bundled BGL sample, sent as raw lines (in file order)
    to the HTTP endpoint, comes back with the event ids prepare wrote and the probability the evaluator computes."""
    import pyarrow.parquet as pq

    from fusionlog.dataset import load_prepared
    from fusionlog.scoring import Scorer

    prepared = artifact_dir.parent / "prepared"
    probs, dropped = Scorer.load(artifact_dir).score_system(load_prepared(prepared, "BGL", read_labels=False))
    assert dropped["unknown_events_dropped"] == 0
    windows = pq.read_table(prepared / "BGL" / "sequences.parquet", columns=["seq_id", "event_ids", "line_numbers"])
    windows = windows.to_pylist()
    lines = (SAMPLE / "BGL_2k.log").read_text().splitlines()
    assert len(windows) == len(probs) == 100
    for start in range(0, len(windows), 2):  # the test server's limits: 100 lines, 20 kB a request
        batch = windows[start:start + 2]
        body = {"sequences": [{"id": w["seq_id"], "lines": [lines[n - 1] for n in sorted(w["line_numbers"])]}
                              for w in batch]}
        status, reply = _call(f"{server}/v1/score", body)
        assert status == 200, reply
        for w, got, p in zip(batch, reply["sequences"], probs[start:start + 2]):
            assert got["id"] == w["seq_id"] and got["event_ids"] == w["event_ids"]
            assert got["probability"] == round(float(p), 6)
