import numpy as np
import pytest

from fusionlog.config import FusionLogError
from fusionlog.retrieval import MemoryStore, MilvusStore, Record, sequence_content, sequence_vectors


def test_sequence_vector_is_mean_of_unit_event_vectors():
    ev = np.array([[3.0, 0.0], [0.0, 2.0]])
    v = sequence_vectors([np.array([0, 1]), np.array([0, 0, 0]), np.array([], dtype=np.int64)], ev)
    np.testing.assert_allclose(v, [[np.sqrt(0.5), np.sqrt(0.5)], [1.0, 0.0], [0.0, 0.0]], atol=1e-6)


def test_sequence_content_collapses_repeats_and_caps():
    assert sequence_content(["a", "a", "b", "a"], 10) == "a (x2)\nb\na"
    assert sequence_content(["a", "b", "c"], 2) == "a\nb\n... (1 more events)"


def _records(n):
    return [Record(f"s{i}", f"t{i}", i % 2, 0.5 + i / 100) for i in range(n)]


def test_memory_store_exact_top_k():
    store = MemoryStore()
    vecs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    store.add(_records(3), vecs)
    hits = store.search(np.array([[1.0, 0.1]]), 2)[0]
    assert [h.seq_id for h in hits] == ["s0", "s2"] and hits[0].score == pytest.approx(0.995, abs=1e-3)
    with pytest.raises(ValueError):
        store.add(_records(2), vecs)


def test_milvus_lite_agrees_with_memory_store(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    mem, mil = MemoryStore(), MilvusStore(str(tmp_path / "kb.db"), "kb", 8)
    try:
        for store in (mem, mil):
            store.add(_records(50), vecs)
        assert mil.count() == 50
        got = [[h.seq_id for h in row] for row in mil.search(queries, 3)]
        want = [[h.seq_id for h in row] for row in mem.search(queries, 3)]
        assert got == want
        first = mil.search(queries[:1], 1)[0][0]
        assert (first.label, first.content) in {(r.label, r.content) for r in _records(50)}
    finally:
        mil.close()


def test_milvus_lite_file_locked_by_another_process(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "kb.db"
    holder = subprocess.Popen([sys.executable, "-c", f"from pymilvus import MilvusClient; c = MilvusClient({str(db)!r}); "
                               "print('ready', flush=True); import time; time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(FusionLogError, match="one process only"):
            MilvusStore(str(db), "kb", 4)
    finally:
        holder.kill()
        holder.wait()
