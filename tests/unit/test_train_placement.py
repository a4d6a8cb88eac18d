"""``train.placement``: where Ray Train's workers go (tests/e2e/test_cluster.py runs spread on two nodes)."""
import pytest

from fusionlog.config import ConfigError, load_config
from fusionlog.dataset import build_train_data
from fusionlog.train import run_hash

from tests.unit._synthetic import make_system

BASE = """
data:
  sources: [HDFS]
  target: BGL
  systems:
    HDFS: {inputs: [{path: a.log}]}
    BGL: {inputs: [{path: b.log}]}
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(BASE)
    return path


def test_placement_is_pack_or_spread(config_file):
    assert load_config(config_file).train.placement == "pack"
    assert load_config(config_file, ["train.placement=spread"]).train.placement == "spread"
    with pytest.raises(ConfigError, match="train.placement: 'strict'; allowed: pack, spread"):
        load_config(config_file, ["train.placement=strict"])


def test_placement_is_not_part_of_the_run(config_file):
    """Where the workers ran does not change the model, so a run resumes whatever the placement."""
    data = build_train_data([make_system("SRC", seed=1)], make_system("TGT", seed=2), 0.25, 0)
    assert run_hash(load_config(config_file), data) == run_hash(load_config(config_file, ["train.placement=spread"]), data)
