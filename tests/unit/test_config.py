import pytest

from fusionlog.config import ConfigError, FusionLogConfig, flatten, load_config, merge_config, parse_overrides


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


BASE = """
data:
  sources: [HDFS]
  target: BGL
  systems:
    HDFS: {inputs: [{path: a.log}]}
    BGL: {inputs: [{path: b.log}]}
"""


def test_defaults_yaml_and_overrides_in_order(tmp_path):
    cfg = load_config(_write(tmp_path, BASE + "parsing: {sim_th: 0.3}\n"), ["parsing.sim_th=0.45", "ray.num_workers=3"])
    assert isinstance(cfg, FusionLogConfig)
    assert cfg.parsing.sim_th == 0.45 and cfg.ray.num_workers == 3
    assert cfg.parsing.depth == 4  # default kept
    # built-in system merged under the user's inputs; paths resolved relative to the YAML file
    assert cfg.data.systems["HDFS"].grouping.id_regex == r"(blk_-?\d+)"
    assert cfg.data.systems["HDFS"].inputs[0].path == str(tmp_path / "a.log")
    assert cfg.data.systems["BGL"].label.kind == "first_token"


def test_all_problems_reported_together(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, BASE + "parsing: {sim_th: high, colour: red}\nray: {num_workers: 0}\n"))
    msg = str(err.value)
    assert "config.parsing.sim_th: expected float, got 'high'" in msg
    assert "config.parsing.colour: unknown key" in msg


def test_unknown_system_names_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown system 'bgl2' in data.sources/data.target; known: HDFS, BGL, OpenStack"):
        load_config(_write(tmp_path, BASE), ["data.target=bgl2"])


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        parse_overrides(["parsing.sim_th"])
    assert parse_overrides(["a.b=[x, y]", "c=0.5"]) == [("a.b", ["x", "y"]), ("c", 0.5)]


def test_user_defined_system(tmp_path):
    text = """
data:
  sources: [App]
  target: BGL
  systems:
    App:
      log_format: "<Date> <Time> <Level> <Component>: <Content>"
      grouping: {kind: count_window, window_size: 5, window_step: 5}
      inputs: [{path: app.log}]
    BGL: {inputs: [{path: b.log}]}
"""
    cfg = load_config(_write(tmp_path, text))
    assert cfg.data.systems["App"].grouping.window_size == 5
    with pytest.raises(ConfigError, match="window_step"):
        load_config(_write(tmp_path, text), ["data.systems.App.grouping.window_step=9"])


def test_merge_config_and_flatten(tmp_path):
    base = load_config(_write(tmp_path, BASE))
    merged = merge_config(base, {"model": {"hidden": 32}, "teacher": {"kind": "pca"}})
    assert (merged.model.hidden, merged.teacher.kind, base.model.hidden) == (32, "pca", 128)
    with pytest.raises(ConfigError, match="model.hiden: unknown key"):
        merge_config(base, {"model": {"hiden": 32}})
    with pytest.raises(ConfigError, match="teacher.kind: 'oracle'"):
        merge_config(base, {"teacher": {"kind": "oracle"}})
    assert flatten({"model": {"hidden": 32}, "teacher": {"members": ["a", "b"]}}) == [
        "model.hidden=32", "teacher.members=[a, b]"]


def test_teacher_and_distillation_choices_are_checked(tmp_path):
    cfg = load_config(_write(tmp_path, BASE), ["teacher.kind=committee", "teacher.members=[keyword,pca]",
                                               "distill.scope=all"])
    assert cfg.teacher.members == ["keyword", "pca"] and cfg.distill.scope == "all" and cfg.distill.replay
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, BASE), ["teacher.kind=committee", "teacher.members=[keyword,oracle]",
                                             "distill.scope=target"])
    msg = str(err.value)
    assert "teacher.members: ['keyword', 'oracle']" in msg and "distill.scope: 'target'" in msg
    with pytest.raises(ConfigError, match="teacher.members"):
        load_config(_write(tmp_path, BASE), ["teacher.kind=committee", "teacher.members=[]"])


def test_parallel_min_bytes_is_checked(tmp_path):
    assert load_config(_write(tmp_path, BASE), ["parsing.parallel_min_bytes=0"]).parsing.parallel_min_bytes == 0
    with pytest.raises(ConfigError, match="parsing.parallel_min_bytes: -1; must be >= 0"):
        load_config(_write(tmp_path, BASE), ["parsing.parallel_min_bytes=-1"])
