"""Inputs that look wrong say so (issue 17): every file before work, and a log against its declared system."""
import pytest

from fusionlog.config import FusionLogError, load_config
from fusionlog.input_checks import check_format, check_input_files, check_label_field, file_problem
from fusionlog.parsing import parse_sequential

from tests.conftest import ROOT, SAMPLE


@pytest.fixture(scope="module")
def cfg():
    return load_config(ROOT / "configs" / "demo.yaml")


def _parsed(cfg, log: str, system: str):
    path = str(SAMPLE / log)
    return parse_sequential([path], cfg.data.systems[system], cfg.parsing).table, [path]


def test_an_hdfs_log_declared_as_bgl_is_an_error_naming_the_first_line(cfg):
    """Before: rc 0, every line "parsed", every window labelled anomalous, no warning."""
    table, paths = _parsed(cfg, "HDFS_2k.log", "BGL")
    check_format(table, paths, cfg.data.systems["BGL"], cfg.parsing.max_format_mismatch)  # the format does match
    with pytest.raises(FusionLogError, match=r"BGL: 2000 of 2000 parsed lines are labelled anomalous by "
                                             r"label.kind=first_token .*first at .*HDFS_2k.log:1, first token "
                                             r"'081109'. The first field is not BGL's label field"):
        check_label_field(table, paths, cfg.data.systems["BGL"])


def test_a_log_that_mostly_fails_the_declared_format_is_an_error(cfg, tmp_path):
    head = tmp_path / "BGL_2k.log"  # 200 lines: a non-matching line costs the format regex ~15 ms of backtracking
    head.write_text("".join((SAMPLE / "BGL_2k.log").read_text().splitlines(keepends=True)[:200]))
    paths = [str(head)]
    table = parse_sequential(paths, cfg.data.systems["HDFS"], cfg.parsing).table
    with pytest.raises(FusionLogError, match=r"HDFS: 1\d\d of 200 non-empty lines do not match log_format "
                                             r"'<Date> <Time> <Pid> <Level> <Component>: <Content>' "
                                             r"\(parsing.max_format_mismatch=0.5\); first at .*BGL_2k.log:1: "
                                             r"'- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11"):
        check_format(table, paths, cfg.data.systems["HDFS"], 0.5)
    check_format(table, paths, cfg.data.systems["HDFS"], 1.0)  # 1 = never an error


def test_the_right_logs_pass_both_checks(cfg):
    for log, name in (("BGL_2k.log", "BGL"), ("HDFS_2k.log", "HDFS")):
        table, paths = _parsed(cfg, log, name)
        check_format(table, paths, cfg.data.systems[name], cfg.parsing.max_format_mismatch)
        check_label_field(table, paths, cfg.data.systems[name])


def test_every_input_file_is_checked_and_all_problems_reported_together(cfg, tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_text("")
    systems = {name: s for name, s in cfg.data.systems.items()}
    systems["HDFS"].inputs[0].path = str(tmp_path)  # a directory: was "input file not found"
    systems["HDFS"].inputs[0].label_file = str(tmp_path / "labels.csv")
    systems["BGL"].inputs[0].path = str(empty)
    with pytest.raises(FusionLogError) as err:
        check_input_files(systems, ["HDFS", "BGL"])
    assert str(err.value).splitlines() == [
        "inputs are not usable:",
        f"  - data.systems.HDFS.inputs[0].path: input path is a directory, expected a file: {tmp_path}",
        f"  - data.systems.HDFS.inputs[0].label_file: input file not found: {tmp_path / 'labels.csv'}",
        f"  - data.systems.BGL.inputs[0].path: input file is empty: {empty}"]


def test_a_label_rule_without_a_label_file_is_reported_before_work(cfg):
    system = cfg.data.systems["HDFS"]
    system.inputs[0].label_file = ""
    with pytest.raises(FusionLogError, match=r"data.systems.HDFS.label.path: label.kind=label_file needs label.path "
                                             r"or inputs\[\].label_file"):
        check_input_files({"HDFS": system}, ["HDFS"])


def test_file_problem(tmp_path):
    ok = tmp_path / "ok.log"
    ok.write_text("x\n")
    assert file_problem(ok) == ""
    assert file_problem(tmp_path / "nope") == f"input file not found: {tmp_path / 'nope'}"
