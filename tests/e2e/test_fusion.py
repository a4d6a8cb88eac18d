"""FusionLog end to end on the bundled samples: prepare -> route -> Ray Train -> distill (real Milvus Lite)
-> fused artifact that loads and scores."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from fusionlog.artifact import evaluate_artifact, load_artifact
from fusionlog.config import load_config
from fusionlog.pipeline import train

from tests.conftest import ROOT

FAST = ["train.epochs=2", "model.hidden=32", "model.attention_dim=16", "model.head_hidden=16",
        "meta.tasks_per_step=2", "meta.support_size=64", "meta.query_size=64", "distill.finetune_epochs=1",
        "run.progress=false", "parsing.parallel=false", "ray.num_workers=1"]


def _run(tmp_path, extra):
    cfg = load_config(ROOT / "configs" / "demo.yaml",
                      [f"run.output_dir={tmp_path}", f"data.output_dir={tmp_path}/prepared", *FAST, *extra])
    return cfg, train(cfg)


def test_fusion_loop_with_keyword_teacher_and_milvus_lite(ray_local, tmp_path):
    cfg, summary = _run(tmp_path, ["llm.backend=keyword", "distill.rounds=3", "distill.epsilon0=0.5",
                                   "distill.epsilon_step=0.0"])
    routing, dist = summary["routing"], summary["distill"]
    assert routing["general"] + routing["proprietary"] == 100 and routing["proprietary"] > 0
    pools = [r["pool"] for r in dist["rounds"]]
    assert pools[0] == routing["proprietary"] and pools == sorted(pools, reverse=True)
    assert dist["kb_initial"] == routing["general"]
    assert dist["kb_final"] > dist["kb_initial"]  # clean samples joined the knowledge base
    assert (tmp_path / "kb.db").exists()  # Milvus Lite file
    art = load_artifact(summary["artifact"])
    assert art.threshold == summary["threshold"]["value"] and summary["threshold"]["chosen_on"]
    assert art.summary["method"] == "fusionlog" and (tmp_path / "fused" / "drain3_state.bin").is_file()
    kb = pq.read_table(tmp_path / "fused" / "knowledge_base.parquet")
    assert kb.num_rows == dist["kb_final"] and set(kb.column("label").to_pylist()) <= {0, 1}
    events = pq.read_table(tmp_path / "fused" / "events.parquet")
    assert 0 < sum(events.column("is_source").to_pylist()) < events.num_rows
    routed = pq.read_table(tmp_path / "fused" / "routing.parquet")
    assert routed.num_rows == 100 and sum(routed.column("general").to_pylist()) == routing["general"]
    row = evaluate_artifact(summary["artifact"], cfg.data.output_dir, "BGL")
    assert row["evaluated"] == 100 and 0.0 <= row["f1"] <= 1.0 and np.isfinite(row["auroc"])
    saved = json.loads((tmp_path / "train_summary.json").read_text())
    assert [(r["pool"], r["clean"]) for r in saved["distill"]["rounds"]] == list(zip(pools, [r["clean"] for r in dist["rounds"]]))


@pytest.mark.slow
def test_fusion_loop_with_real_cpu_llm(ray_local, tmp_path):
    """SmolLM2-135M in process (log-likelihood mode, threshold calibrated on source-val), Milvus Lite."""
    pytest.importorskip("llama_cpp")
    _, summary = _run(tmp_path, ["llm.backend=llama_cpp", "llm.calibration_samples=16", "distill.rounds=2",
                                 "distill.max_pool=12", "distill.epsilon0=0.5", "distill.epsilon_step=0.0"])
    dist = summary["distill"]
    assert summary["teacher"]["calibrated"] and dist["rounds"][0]["pool"] == 12
    assert dist["kb_final"] >= dist["kb_initial"]
    assert load_artifact(summary["artifact"]).score([np.array([0, 1])])[0].shape == (1,)
