"""The small model through real Ray Train (2 CPU workers) on tiny synthetic prepared data.

Asserts what issue 6 asks: the loss falls, a rerun resumes from the last checkpoint and ends where
an uninterrupted run ends, a target loaded without labels trains identically, and a checkpoint
written by another config is refused before training starts.
"""
from pathlib import Path

import pytest
import ray
import torch

from tests.unit._synthetic import make_system, write_prepared

from fusionlog.artifact import load_artifact  # noqa: E402
from fusionlog.config import FusionLogConfig, MetaConfig, ModelConfig  # noqa: E402
from fusionlog.dataset import build_train_data, load_prepared  # noqa: E402
from fusionlog.evaluate import evaluate_artifact  # noqa: E402
from fusionlog.meta import predict_proba  # noqa: E402
from fusionlog.train import fit_small, run_name  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    write_prepared(root, make_system("SRC", n_seq=240, seed=1))
    write_prepared(root, make_system("TGT", n_seq=120, seed=2, shift=0.3))
    return root


def _data(prepared, read_target_labels: bool):
    source = load_prepared(prepared, "SRC", read_labels=True)
    target = load_prepared(prepared, "TGT", read_labels=read_target_labels)
    return build_train_data([source], target, val_fraction=0.25, seed=0)


def _cfg(out: Path, epochs: int = 3) -> FusionLogConfig:
    cfg = FusionLogConfig()
    cfg.run.output_dir = str(out)
    cfg.ray.num_workers = 2
    cfg.model = ModelConfig(hidden=8, attention_dim=4, head_hidden=4, max_len=16)
    cfg.meta = MetaConfig(support_size=16, query_size=16, tasks_per_step=2, meta_lr=1e-2, anomaly_lr=1e-2,
                          domain_lr=1e-2)
    cfg.train.epochs = epochs
    cfg.train.steps_per_epoch = 4
    return cfg


@pytest.fixture(scope="module")
def straight(ray_local, prepared, tmp_path_factory):
    """An uninterrupted 3-epoch run, target loaded WITH labels (they must not matter)."""
    out = tmp_path_factory.mktemp("straight")
    return fit_small(_cfg(out), _data(prepared, read_target_labels=True))


def test_loss_falls_and_artifact_is_self_contained(straight, prepared):
    history = straight.history
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[-1]["loss_c"] < history[0]["loss_c"]
    art = load_artifact(straight.artifact_dir)
    assert art.threshold == straight.best_metrics["threshold"]
    assert art.summary["best_epoch"] == straight.best_epoch
    target = load_prepared(prepared, "TGT", read_labels=False)
    seqs, unknown = art.reindex(target)
    assert unknown == 0 and len(seqs) == len(target)
    probs, _ = art.score(seqs)
    assert probs.shape == (120,) and ((probs > 0) & (probs < 1)).all()
    # the artifact reproduces the source-val F1 it was selected with
    data = _data(prepared, read_target_labels=False)
    val, _ = predict_proba(art.model, data.source_val, 256, art.model_config.max_len)
    pred = (val >= art.threshold).astype(int)
    tp = int(((pred == 1) & (data.source_val_labels == 1)).sum())
    f1 = 2 * tp / (pred.sum() + data.source_val_labels.sum())
    assert f1 == pytest.approx(straight.best_metrics["val_f1"])
    row = evaluate_artifact(straight.artifact_dir, prepared)  # the evaluator reads target labels
    assert row["pair"] == "SRC->TGT" and row["evaluated"] == 120 and row["anomalous"] > 0


def test_rerun_resumes_from_the_last_checkpoint(straight, prepared, tmp_path):
    data = _data(prepared, read_target_labels=False)
    first = fit_small(_cfg(tmp_path, epochs=2), data)
    resumed = fit_small(_cfg(tmp_path, epochs=3), data)
    assert first.name == resumed.name  # epochs is not part of the run's identity
    run_dir = tmp_path / "ray_train" / resumed.name
    assert (run_dir / "epoch_0002").is_dir()
    assert resumed.history == straight.history  # 2 + 1 epochs end exactly where 3 straight ones do


def test_target_without_labels_trains_identically(straight, prepared, tmp_path):
    data = _data(prepared, read_target_labels=False)
    assert run_name(_cfg(tmp_path), data) == straight.name  # same data fingerprint: no labels in it
    unlabelled = fit_small(_cfg(tmp_path), data)
    assert unlabelled.history == straight.history
    a = torch.load(Path(unlabelled.artifact_dir) / "model.pt", weights_only=True)
    b = torch.load(Path(straight.artifact_dir) / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_from_another_config_is_refused_before_training(straight, prepared):
    data = _data(prepared, read_target_labels=False)
    cfg = _cfg(Path(straight.artifact_dir).parents[1])
    cfg.meta.beta = 0.5  # another config, forced onto the same run name
    with pytest.raises(ValueError, match="was written by run"):
        fit_small(cfg, data, name=straight.name)
