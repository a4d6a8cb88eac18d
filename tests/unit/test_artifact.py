"""Artifact round trip without Ray: save, load, score the same, evaluate with target labels."""
import json

import numpy as np
import pytest

from tests.unit._synthetic import make_system, write_prepared
from fusionlog.artifact import load_artifact, save_artifact
from fusionlog.evaluate import evaluate_artifact
from fusionlog.config import FusionLogConfig, FusionLogError, MetaConfig, ModelConfig, to_dict
from fusionlog.dataset import load_train_data
from fusionlog.meta import predict_proba, train_loop


def _tiny_run(tmp_path, n_source: int, n_target: int, task_size: int, tasks: int, steps: int):
    """Prepared SRC/TGT systems of synthetic sequences and a tiny model trained on them: (data, cfg, loop output)."""
    write_prepared(tmp_path / "prepared", make_system("SRC", n_seq=n_source, seed=1))
    write_prepared(tmp_path / "prepared", make_system("TGT", n_seq=n_target, seed=2, shift=0.3))
    data = load_train_data(tmp_path / "prepared", ["SRC"], "TGT", 0.25, seed=0)
    cfg = FusionLogConfig()
    cfg.model = ModelConfig(hidden=8, attention_dim=4, head_hidden=4, max_len=16)
    cfg.meta = MetaConfig(support_size=task_size, query_size=task_size, tasks_per_step=tasks)
    cfg.train.epochs, cfg.train.steps_per_epoch = steps, steps
    return data, cfg, train_loop(cfg, data, lambda metrics, state: None)


def test_save_load_score_and_evaluate(tmp_path):
    data, cfg, out = _tiny_run(tmp_path, 120, 60, task_size=12, tasks=2, steps=2)
    best = out["best"]
    summary = {"threshold": best["metrics"]["threshold"], "data_counts": data.counts, "sources": ["SRC"],
               "target": "TGT", "best_epoch": best["epoch"]}
    save_artifact(tmp_path / "art", best["model"], to_dict(cfg), data.table, summary, data.source_events())

    art = load_artifact(tmp_path / "art")
    assert art.table.event_ids == data.table.event_ids and art.model_config == cfg.model
    out["model"].load_state_dict(best["model"])
    expected, _ = predict_proba(out["model"], data.target, 64, 16)
    np.testing.assert_allclose(art.score(data.target)[0], expected, atol=1e-7)

    row = evaluate_artifact(tmp_path / "art", tmp_path / "prepared")
    assert row["pair"] == "SRC->TGT" and row["method"] == "meta"
    assert row["evaluated"] == 60 and row["unknown_events_dropped"] == 0 and row["train_target"] == 60
    assert 0.0 <= row["f1"] <= 1.0 and json.loads(json.dumps(row)) == row


def test_load_artifact_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing model.pt, config.json"):
        load_artifact(tmp_path)


@pytest.fixture
def saved(tmp_path):
    """A tiny trained artifact and what save_artifact needs to write it again."""
    data, cfg, out = _tiny_run(tmp_path, 60, 30, task_size=8, tasks=1, steps=1)
    best = out["best"]
    args = (best["model"], to_dict(cfg), data.table, {"threshold": 0.5}, data.source_events())
    save_artifact(tmp_path / "art", *args, extras=lambda d: (d / "drain3_state.bin").write_text("state"))
    return tmp_path / "art", args


def test_a_failed_save_leaves_the_previous_artifact_byte_identical(saved):
    art, args = saved
    before = {p.name: p.read_bytes() for p in art.iterdir()}
    assert set(before) == {"model.pt", "config.json", "events.parquet", "summary.json", "drain3_state.bin"}

    def fail(folder):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_artifact(art, *args, extras=fail)
    assert {p.name: p.read_bytes() for p in art.iterdir()} == before
    assert sorted(p.name for p in art.parent.iterdir()) == ["art", "prepared"]  # no staging folder left


@pytest.mark.parametrize("damage, message", [
    (lambda a: (a / "model.pt").write_bytes((a / "model.pt").read_bytes()[:100]), "model.pt: cannot load the weights"),
    (lambda a: (a / "summary.json").write_text("{"), "summary.json: not valid JSON"),
    (lambda a: (a / "events.parquet").write_bytes(b"PAR1junk"), "damaged artifact (ArrowInvalid"),
])
def test_a_damaged_artifact_is_named_not_a_traceback(saved, damage, message):
    art, _ = saved
    damage(art)
    with pytest.raises(FusionLogError, match=None) as err:
        load_artifact(art)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
