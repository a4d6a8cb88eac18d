"""Real LLM back-ends on CPU: SmolLM2-135M in-process (llama-cpp-python) and over HTTP (llama_cpp.server).

The 135M model is weak: these tests check well-formed, finite results and report p_anomalous,
they do not assert that it labels correctly (see docs and the engineer's report).
"""
from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("llama_cpp")

from fusionlog.config import LLMConfig  # noqa: E402
from fusionlog.llm import LLMBackendError  # noqa: E402
from fusionlog.llm import make_llm  # noqa: E402
from fusionlog.llm.llama_cpp import default_model_path  # noqa: E402
from fusionlog.llm.vllm import vllm_processor_config, vllm_sampling_params  # noqa: E402
from fusionlog.teachers import Example, LabelRequest  # noqa: E402

FAILING = ["Receiving block <*> src: <*> dest: <*>", "java.io.IOException: Connection reset by peer",
           "PacketResponder <*> for block <*> terminating with exception", "machine check interrupt: fatal error"]
FINE = ["Receiving block <*> src: <*> dest: <*>", "Received block <*> of size <*> from <*>",
        "PacketResponder <*> for block <*> terminating", "BLOCK* NameSystem.addStoredBlock: blockMap updated"]
EXAMPLES = [Example(FINE, 0, 0.97), Example(FAILING[1:3], 1, 0.91)]


def _requests(examples=()):
    return [LabelRequest("failing", "HDFS", FAILING, list(examples)), LabelRequest("fine", "HDFS", FINE, list(examples))]


@pytest.fixture(scope="module")
def gguf():
    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"SmolLM2 GGUF not found at {path}")
    return path


def _well_formed(results, n, mode):
    assert len(results) == n
    for r in results:
        assert r.error == "", r.error
        assert r.label in (0, 1)
        assert math.isfinite(r.p_anomalous) and 0.0 <= r.p_anomalous <= 1.0
        if mode == "generate":
            assert r.p_anomalous == float(r.label) and r.raw in ("normal", "anomalous")


def test_llama_cpp_loglik(gguf):
    """Two real requests, plus one over n_ctx that fails alone (error set, label -1) without failing the batch."""
    backend = make_llm(LLMConfig(mode="loglik", max_templates=64, n_ctx=512))
    too_long = LabelRequest("long", "BGL", [f"event number {i} happened on node <*>" for i in range(64)], [])
    try:
        results = backend.answer([*_requests(), too_long])
    finally:
        backend.close()
    _well_formed(results[:2], 2, "loglik")
    assert [r.seq_id for r in results] == ["failing", "fine", "long"]
    assert results[0].raw.startswith("loglik normal=")
    assert results[2].label == -1 and math.isnan(results[2].p_anomalous) and "llm.n_ctx=512" in results[2].error
    print("loglik p_anomalous failing=%.4f fine=%.4f" % (results[0].p_anomalous, results[1].p_anomalous))
    assert {k: backend.stats[k] for k in ("unparseable", "retries", "errors")} == {"unparseable": 0, "retries": 0,
                                                                                   "errors": 1}


@pytest.mark.slow
def test_llama_cpp_both_modes_with_examples(gguf):
    for mode in ("loglik", "generate"):
        backend = make_llm(LLMConfig(mode=mode))
        try:
            results = backend.answer(_requests(EXAMPLES))
        finally:
            backend.close()
        _well_formed(results, 2, mode)
        print(mode, [(r.seq_id, r.label, round(r.p_anomalous, 4), r.raw) for r in results])


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(LLMBackendError, match="not found"):
        make_llm(LLMConfig(model_path=str(tmp_path / "nope.gguf")))


# ----------------------------------------------------------------------------- http


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(gguf, tmp_path_factory):
    """llama_cpp.server on 127.0.0.1 (via fusionlog.llm.server, which turns off the crashing CPU repack)."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "fusionlog.llm.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"],
                           stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(url + "/models", timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"llama_cpp.server did not start (exit {proc.poll()}); see {log.name}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_http_backend_through_ray_data(llama_server, ray_local):
    cfg = LLMConfig(backend="http", mode="generate", base_url=llama_server, constraint="grammar",
                    batch_size=2, concurrency=1, max_templates=8, timeout_s=120)
    backend = make_llm(cfg)
    try:
        results = backend.answer(_requests())
    finally:
        backend.close()
    _well_formed(results, 2, "generate")
    assert [r.seq_id for r in results] == ["failing", "fine"]
    print("http", [(r.seq_id, r.raw) for r in results], backend.stats)


def test_http_backend_unreachable_is_a_clear_error():
    cfg = LLMConfig(backend="http", mode="generate", base_url=f"http://127.0.0.1:{_free_port()}/v1", timeout_s=5)
    with pytest.raises(LLMBackendError, match="unreachable"):
        make_llm(cfg)


# ----------------------------------------------------------------------------- vllm


def test_vllm_processor_config_builds():
    pytest.importorskip("ray.data.llm")
    cfg = LLMConfig(backend="vllm", mode="generate", model="HuggingFaceTB/SmolLM2-135M-Instruct",
                    concurrency=2, batch_size=32, vllm_engine_kwargs={"tensor_parallel_size": 1})
    config = vllm_processor_config(cfg)
    assert config.should_continue_on_error is True
    assert config.concurrency == 2 and config.batch_size == 32
    assert config.engine_kwargs["max_model_len"] == 2048 and config.engine_kwargs["tensor_parallel_size"] == 1
    assert vllm_sampling_params(cfg)["structured_outputs"] == {"choice": ["normal", "anomalous"]}


@pytest.mark.gpu
def test_vllm_backend_labels(ray_local):
    pytest.importorskip("vllm")
    cfg = LLMConfig(backend="vllm", mode="generate", model="HuggingFaceTB/SmolLM2-135M-Instruct", batch_size=2)
    backend = make_llm(cfg)
    results = backend.answer(_requests(EXAMPLES))
    _well_formed(results, 2, "generate")


@pytest.mark.slow
def test_fusionlog_with_an_llm_over_http(llama_server, ray_local, tmp_path):
    """The GPU path is configuration: teacher.kind=llm with llm.backend=http (vllm serve speaks the same API);
    here llama_cpp.server stands in for it. Prompts carry retrieved examples and the target's name."""
    from fusionlog.config import load_config
    from fusionlog.pipeline import train

    from tests.conftest import ROOT

    cfg = load_config(ROOT / "configs" / "demo.yaml", [
        f"run.output_dir={tmp_path}", f"data.output_dir={tmp_path}/prepared", "parsing.parallel=false",
        "run.progress=false", "train.epochs=2", "model.hidden=16", "teacher.kind=llm", "llm.backend=http",
        "llm.mode=generate", f"llm.base_url={llama_server}", "llm.constraint=grammar", "llm.max_templates=8",
        "distill.max_pool=6", "distill.rounds=1", "retrieval.backend=memory"])
    summary = train(cfg)
    assert summary["teacher"]["stats"]["requests"] >= 6 and summary["distill"]["pool_initial"] > 0
