"""Ray Tune over the small model through real Tune + Ray Train, on tiny synthetic prepared data.

Two trials x 2 epochs, one CPU Ray Train worker each; ASHA with grace period 1 may stop the weaker
trial after its first epoch. Checks the best config is a train-small override file, that the CLI
takes it as a second ``--config``, and that the target's labels are not needed (loaded unlabelled).
"""
from pathlib import Path

import pytest
import yaml

from tests.unit._synthetic import make_system, write_prepared

from fusionlog.cli import file_overrides  # noqa: E402
from fusionlog.config import FusionLogConfig, MetaConfig, ModelConfig, TuneConfig, load_config  # noqa: E402
from fusionlog.tune import tune_small, write_best  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.slow


def _cfg(tmp_path: Path) -> FusionLogConfig:
    prepared = tmp_path / "prepared"
    write_prepared(prepared, make_system("SRC", n_seq=160, seed=1))
    write_prepared(prepared, make_system("TGT", n_seq=80, seed=2, shift=0.3))
    cfg = FusionLogConfig()
    cfg.run.output_dir = str(tmp_path / "out")
    cfg.run.progress = False
    cfg.data.sources, cfg.data.target, cfg.data.output_dir = ["SRC"], "TGT", str(prepared)
    cfg.ray.num_workers = 1
    cfg.model = ModelConfig(hidden=8, attention_dim=4, head_hidden=4, max_len=16)
    cfg.meta = MetaConfig(support_size=16, query_size=16, tasks_per_step=1)
    cfg.train.epochs, cfg.train.steps_per_epoch, cfg.train.val_fraction = 2, 2, 0.25
    cfg.tune = TuneConfig(num_samples=2, grace_period=1, reduction_factor=2, meta_lr=[1e-3, 1e-2], inner_lr=[],
                          beta=[0.05, 0.5], gamma=[], hidden=[4, 8], inner_steps=[1])
    return cfg


def test_tune_small_writes_a_best_config_train_small_accepts(ray_local, tmp_path):
    cfg = _cfg(tmp_path)
    result = tune_small(cfg, cfg.tune)
    assert result.trials == 2 and result.metric == "val_f1" and 0.0 <= result.score <= 1.0
    assert set(result.best) == {"meta", "model"}
    assert set(result.best["meta"]) == {"meta_lr", "beta", "inner_steps"} and set(result.best["model"]) == {"hidden"}
    assert 1e-3 <= result.best["meta"]["meta_lr"] <= 1e-2 and result.best["model"]["hidden"] in (4, 8)

    best = write_best(result, tmp_path / "best.yaml")
    assert yaml.safe_load(best.read_text()) == result.best
    tuned = load_config(ROOT / "configs" / "demo.yaml", file_overrides([str(best)]))
    assert tuned.meta.meta_lr == result.best["meta"]["meta_lr"] and tuned.model.hidden == result.best["model"]["hidden"]

    # the same command restores the finished experiment instead of running it again
    again = tune_small(cfg, cfg.tune)
    assert again.best == result.best and again.path == result.path

