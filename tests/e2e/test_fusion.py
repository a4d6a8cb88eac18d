"""FusionLog end to end on the bundled samples: prepare -> route -> Ray Train -> distill (real Milvus Lite)
-> fused artifact that loads and scores."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from fusionlog.artifact import load_artifact
from fusionlog.evaluate import evaluate_artifact
from fusionlog.config import load_config
from fusionlog.dataset import load_prepared
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
    cfg, summary = _run(tmp_path, ["teacher.kind=keyword", "distill.rounds=3", "distill.epsilon0=0.5",
                                   "distill.epsilon_step=0.0"])
    routing, dist = summary["routing"], summary["distill"]
    assert routing["general"] + routing["proprietary"] == 100 and routing["proprietary"] > 0
    pools = [r["pool"] for r in dist["rounds"]]
    assert pools[0] == routing["proprietary"] - dist["held_out"] and pools == sorted(pools, reverse=True)
    assert dist["held_out"] == round(0.2 * routing["proprietary"])  # never fine-tuned on: the threshold's ground
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
    _, summary = _run(tmp_path, ["teacher.kind=llm", "llm.backend=llama_cpp", "teacher.calibration_samples=16", "distill.rounds=2",
                                 "distill.max_pool=12", "distill.epsilon0=0.5", "distill.epsilon_step=0.0"])
    dist = summary["distill"]
    assert summary["teacher"]["calibrated"] and dist["rounds"][0]["pool"] == 12
    assert dist["kb_final"] >= dist["kb_initial"]
    assert load_artifact(summary["artifact"]).score([np.array([0, 1])])[0].shape == (1,)


def test_fused_model_is_the_same_when_the_target_labels_are_flipped(ray_local, tmp_path):
    """Zero-label hygiene (issue 9): flip every target label on disk and rerun the whole pipeline (routing,
    Ray Train, teacher calibration, distillation with every sequence in the pool, the fused threshold): the
    fused weights, threshold, pseudo-labels and predictions must not move. Any code path that read target
    labels to choose a threshold, an epoch, a teacher or a hyperparameter would show up here."""
    import shutil

    import pyarrow as pa
    import torch

    teacher = ["teacher.kind=committee", "teacher.members=[keyword,pca]", "teacher.calibration_samples=0",
               "distill.scope=all", "retrieval.backend=memory", "distill.rounds=2"]
    cfg_a, sa = _run(tmp_path / "a", teacher)
    flipped = tmp_path / "flipped"
    shutil.copytree(cfg_a.data.output_dir, flipped)
    path = flipped / "BGL" / "sequences.parquet"
    table = pq.read_table(path)
    labels = np.asarray(table.column("label").to_numpy(), dtype=np.int8)
    assert set(labels.tolist()) == {0, 1}
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", pa.array(1 - labels, pa.int8())),
                   path)
    cfg_b = load_config(ROOT / "configs" / "demo.yaml", [f"run.output_dir={tmp_path / 'b'}",
                                                          f"data.output_dir={flipped}", *FAST, *teacher])
    sb = train(cfg_b, skip_prepare=True)
    same = json.dumps  # NaN losses (rounds without fine-tuning) compare equal as text
    assert same(sa["distill"]) == same(sb["distill"]) and same(sa["teacher"]) == same(sb["teacher"])
    assert sa["threshold"] == sb["threshold"]
    wa, wb = (torch.load(f"{s['artifact']}/model.pt", weights_only=True) for s in (sa, sb))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    target = load_prepared(cfg_a.data.output_dir, "BGL", read_labels=False)
    pa_, pb = (load_artifact(s["artifact"]).score(load_artifact(s["artifact"]).reindex(target)[0])[0] for s in (sa, sb))
    np.testing.assert_array_equal(pa_, pb)
    # the evaluator, the one reader of target labels, does see the flip
    ra, rb = (evaluate_artifact(s["artifact"], c.data.output_dir, "BGL") for s, c in ((sa, cfg_a), (sb, cfg_b)))
    assert ra["anomalous"] + rb["anomalous"] == ra["evaluated"] == rb["evaluated"]


def test_a_small_model_is_reused_only_by_the_run_that_trained_it(ray_local, tmp_path):
    from fusionlog.config import FusionLogError

    teacher = ["teacher.kind=keyword", "retrieval.backend=memory", "distill.rounds=1"]
    cfg, first = _run(tmp_path / "a", teacher)
    again = load_config(ROOT / "configs" / "demo.yaml", [f"run.output_dir={tmp_path / 'b'}",
                                                          f"data.output_dir={cfg.data.output_dir}", *FAST, *teacher,
                                                          "distill.scope=all"])
    summary = train(again, skip_prepare=True, small_model=first["small_model"])
    assert summary["small_model"] == first["small_model"] and not (tmp_path / "b" / "small").exists()
    assert summary["distill"]["pool_initial"] == 100  # scope=all: every target sequence
    other = load_config(ROOT / "configs" / "demo.yaml", [f"run.output_dir={tmp_path / 'c'}",
                                                          f"data.output_dir={cfg.data.output_dir}", *FAST, *teacher,
                                                          "run.seed=7"])
    with pytest.raises(FusionLogError, match="is from run"):
        train(other, skip_prepare=True, small_model=first["small_model"])
