"""The Tune search space and config checks, without running Tune (tests/e2e/test_tune.py runs it)."""
import pytest

from fusionlog.cli import file_overrides
from fusionlog.config import ConfigError, FusionLogConfig, TuneConfig, load_config
from fusionlog.tune import apply_params, nested, search_space
from tests.conftest import ROOT


def test_search_space_keeps_empty_dimensions_fixed_and_casts_types():
    tc = TuneConfig(meta_lr=[], inner_lr=[], beta=[], gamma=[], hidden=[16], inner_steps=[])
    assert list(search_space(tc)) == ["model.hidden"]
    cfg = apply_params(FusionLogConfig(), {"model.hidden": 16.0, "meta.beta": 1})
    assert cfg.model.hidden == 16 and isinstance(cfg.model.hidden, int) and isinstance(cfg.meta.beta, float)
    with pytest.raises(ValueError, match="every search dimension"):
        search_space(TuneConfig(meta_lr=[], inner_lr=[], beta=[], gamma=[], hidden=[], inner_steps=[]))
    with pytest.raises(ConfigError, match=r"tune.beta: \[0.0, 1.0\]"):
        load_config(None, ["tune.beta=[0.0, 1.0]"])


def test_nested_gives_the_config_yaml_shape():
    assert nested({"meta.beta": 0.2, "model.hidden": 8}) == {"meta": {"beta": 0.2}, "model": {"hidden": 8}}


def test_bad_choices_and_asha_settings_are_named():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["tune.hidden=[0, 8]", "tune.reduction_factor=1"])
    assert "tune.hidden: [0, 8]" in str(err.value) and "tune.reduction_factor: 1" in str(err.value)


def test_a_second_config_file_applies_over_the_first(tmp_path):
    best = tmp_path / "best.yaml"
    best.write_text("# from Tune\nmeta: {beta: 0.25, inner_steps: 2}\nmodel: {hidden: 32}\n")
    assert file_overrides([str(best)]) == ["meta.beta=0.25", "meta.inner_steps=2", "model.hidden=32"]
    cfg = load_config(ROOT / "configs" / "demo.yaml", [*file_overrides([str(best)]), "model.hidden=16"])
    assert (cfg.meta.beta, cfg.meta.inner_steps, cfg.model.hidden, cfg.train.epochs) == (0.25, 2, 16, 5)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        file_overrides([str(tmp_path / "nope.yaml")])
