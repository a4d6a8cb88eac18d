import pytest

from fusionlog.config import RANGES, ConfigError, FusionLogConfig, flatten, load_config, merge_config, parse_overrides


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


# ----------------------------------------------------------------------------- ranges (issue 17)


def _outside(r):
    """A value just outside a Range: below its low end, else above its high end."""
    return r.low - 1 if r.low is not None else r.high + 1


@pytest.mark.parametrize("r", RANGES, ids=lambda r: r.key)
def test_every_number_is_checked_against_its_range(tmp_path, r):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, BASE), [f"{r.key}={_outside(r)}"])
    assert str(err.value).startswith(f"invalid configuration: {r.key}: "), str(err.value)
    assert "\n" not in str(err.value)  # one problem, one line


@pytest.mark.parametrize("override, message", [
    # the probes: accepted before, then NaN losses, tracebacks from Ray tasks or misleading messages
    ("distill.finetune_batch_size=-1", "distill.finetune_batch_size: -1; must be >= 1"),
    ("parsing.num_shards=-1", "parsing.num_shards: -1; must be >= 0"),
    ("parsing.max_children=-1", "parsing.max_children: -1; must be >= 1"),
    ("parsing.max_line_chars=-5", "parsing.max_line_chars: -5; must be >= 1"),
    ("data.systems.BGL.max_lines=-10", "data.systems.BGL.max_lines: -10; must be >= 0"),
    ("distill.finetune_lr=0", "distill.finetune_lr: 0.0; must be > 0"),
    ("llm.top_p=.nan", "llm.top_p: nan; must be in (0, 1]"),
    ("embedding.encoder=bert", "embedding.encoder: 'bert'; allowed: glove, minilm"),
    ("data.systems.BGL.grouping.window_size=0", "data.systems.BGL.grouping.window_size: 0; must be >= 1"),
    ("data.systems.BGL.label.on_bad_rows=ignore", "label.on_bad_rows: 'ignore'; allowed: error, skip"),
    ("data.systems.BGL.label.normal_values=[]", "anomaly_values and normal_values must both be non-empty"),
    ("data.systems.HDFS.grouping={kind: count_window}", "label.kind: 'label_file' labels sequences by id"),
    ("data.systems.BGL.drain_depth=2", "drain_depth: 2; must be 0 (= parsing.depth) or >= 3"),
    ("retrieval.collection=kb-1", "retrieval.collection: 'kb-1'"),
    ("data.systems.BGL=5", "data.systems.BGL: expected a mapping"),
])
def test_probe_values_are_refused_with_key_value_and_range(tmp_path, override, message):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(_write(tmp_path, BASE), [override])
    assert message in str(err.value), str(err.value)


def test_prepared_dir_may_not_hold_the_run_dir(tmp_path):
    with pytest.raises(ConfigError, match="data.output_dir: 'out' holds run.output_dir 'out/run'"):
        load_config(_write(tmp_path, BASE), ["data.output_dir=out", "run.output_dir=out/run"])


def test_ray_train_retries_a_lost_worker_by_default():
    assert FusionLogConfig().train.max_failures > 0


# ----------------------------------------------------------------------------- YAML errors


@pytest.mark.parametrize("text, where", [
    ("run:\n  output_dir: x\n   seed: 3\n", ":3:8: YAML syntax error: mapping values are not allowed here"),
    ("run: {seed: [1, 2}\n", ":1:18: YAML syntax error: expected ',' or ']', but got '}'"),
    ("run:\n\tseed: 1\n", ":2:1: YAML syntax error: found character '\\t' that cannot start any token"),
])
def test_yaml_syntax_errors_are_one_line_with_file_line_and_column(tmp_path, text, where):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"invalid configuration: {path}{where}"


def test_unreadable_config_files_and_override_values(tmp_path):
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00run")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(binary)
    with pytest.raises(ConfigError, match="is a directory, expected a YAML config file"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match=r"override 'a=\[': the value is not valid YAML \(line 1, column 2"):
        load_config(_write(tmp_path, BASE), ["a=["])
    with pytest.raises(ConfigError, match="override 'run.seed=2001-02-30': the value is not valid YAML"):
        load_config(_write(tmp_path, BASE), ["run.seed=2001-02-30"])
