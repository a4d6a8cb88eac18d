import math

import pyarrow as pa
import pytest

from fusionlog.config import FusionLogError, SystemConfig, build_typed
from fusionlog.sequences import group_lines, read_id_list, read_label_file
from fusionlog.systems import BUILTIN_SYSTEMS

from tests.conftest import SAMPLE


def system(name, **over):
    problems = []
    body = {**BUILTIN_SYSTEMS[name], "name": name, "inputs": [{"path": "x"}]}
    for k, v in over.items():
        body[k] = {**body.get(k, {}), **v} if isinstance(v, dict) else v
    cfg = build_typed(SystemConfig, body, "s", problems)
    assert not problems, problems
    return cfg


def lines_table(events, alerts=None, groups=None, times=None, skips=None, file=0):
    n = len(events)
    return pa.table({
        "file": pa.array([file] * n, pa.int32()), "line": list(range(1, n + 1)), "event_id": events,
        "alert": pa.array(alerts or [-1] * n, pa.int8()), "groups": pa.array(groups or [[]] * n, pa.list_(pa.string())),
        "time": times or [math.nan] * n, "skip": skips or [""] * n,
    })


def test_fixed_windows_label_any_alert_and_keep_partial():
    t = lines_table(list("abcdefg"), alerts=[0, 0, 1, 0, 0, 0, 0])
    seqs, rep = group_lines(t, system("BGL", grouping={"window_size": 3, "window_step": 3}), ["f.log"])
    assert seqs.event_ids == [list("abc"), list("def"), ["g"]]
    assert seqs.labels == [1, 0, 0]
    assert seqs.seq_ids == ["f.log#w0", "f.log#w1", "f.log#w2"]
    assert seqs.line_numbers[1] == [4, 5, 6]
    assert rep.partial_windows == 1 and rep.lines_in_sequences == 7


def test_sliding_windows_and_dropped_tail_counted():
    t = lines_table(list("abcde"), alerts=[0] * 5)
    seqs, rep = group_lines(t, system("BGL", grouping={"window_size": 3, "window_step": 1, "keep_partial": False}),
                            ["f.log"])
    assert seqs.event_ids == [list("abc"), list("bcd"), list("cde")]
    assert rep.lines_in_sequences == 5 and rep.lines_in_dropped_tail == 0
    seqs, rep = group_lines(lines_table(list("abcd"), alerts=[0] * 4),
                            system("BGL", grouping={"window_size": 3, "window_step": 3, "keep_partial": False}), ["f"])
    assert seqs.event_ids == [list("abc")] and rep.lines_in_dropped_tail == 1


def test_window_larger_than_corpus_is_an_error():
    with pytest.raises(FusionLogError, match="window_size=50 is larger than the 3 parsed lines"):
        group_lines(lines_table(list("abc"), alerts=[0] * 3),
                    system("BGL", grouping={"window_size": 50, "window_step": 50, "keep_partial": False}), ["f"])


def test_windows_ordered_by_time_inside():
    t = lines_table(list("abc"), alerts=[0] * 3, times=[3.0, 1.0, 2.0])
    seqs, _ = group_lines(t, system("BGL", grouping={"window_size": 3, "window_step": 3}), ["f"])
    assert seqs.event_ids == [["b", "c", "a"]] and seqs.line_numbers == [[2, 3, 1]]


def test_skipped_lines_stay_out(tmp_path):
    t = lines_table(list("abc"), alerts=[0, 1, 0], skips=["", "binary", ""])
    seqs, _ = group_lines(t, system("BGL", grouping={"window_size": 5, "window_step": 5}), ["f"])
    assert seqs.event_ids == [["a", "c"]] and seqs.labels == [0]


def test_id_grouping_with_label_file(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("BlockId,Label\nblk_1,Anomaly\nblk_2,Normal\nblk_9,Normal\n")
    t = lines_table(["e1", "e2", "e3", "e4"], groups=[["blk_1"], ["blk_2"], ["blk_1", "blk_3"], []])
    seqs, rep = group_lines(t, system("HDFS", label={"path": str(labels)}), ["f"])
    assert seqs.seq_ids == ["blk_1", "blk_2", "blk_3"]
    assert seqs.event_ids == [["e1", "e3"], ["e2"], ["e3"]]
    assert seqs.labels == [1, 0, -1]
    assert rep.lines_without_group == 1 and rep.unlabelled_sequences == 1 and rep.label_ids_not_in_log == 1


def test_id_list_labels(tmp_path):
    ids = tmp_path / "ids.txt"
    u = "544fd51c-4edc-4780-baae-ba1d80a0acfc"
    ids.write_text(f"The following VM instances have injected anomalies.\n\n{u}\n")
    assert read_id_list(str(ids), BUILTIN_SYSTEMS["OpenStack"]["grouping"]["id_regex"]) == {u}
    t = lines_table(["a", "b"], groups=[[u], ["11111111-2222-3333-4444-555555555555"]])
    seqs, _ = group_lines(t, system("OpenStack", label={"path": str(ids)}), ["f"])
    assert seqs.labels == [1, 0]


def test_label_file_missing_column(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("Id,Label\nblk_1,Anomaly\n")
    with pytest.raises(FusionLogError, match="missing column"):
        group_lines(lines_table(["e"], groups=[["blk_1"]]), system("HDFS", label={"path": str(labels)}), ["f"])


# ----------------------------------------------------------------------------- bad label rows (issue 17)


def _broken_sample_labels(tmp_path):
    """The bundled HDFS labels with one unterminated quote on line 3 (the issue's probe)."""
    lines = (SAMPLE / "anomaly_label_2k.csv").read_text().splitlines()
    lines[2] = lines[2].replace(",", ',"', 1)
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, lines[2].split(",")[0]


def test_label_file_with_an_unterminated_quote_fails_naming_the_line(tmp_path):
    path, _ = _broken_sample_labels(tmp_path)
    with pytest.raises(FusionLogError, match=rf"label file {path}:3: not valid CSV \(unexpected end of data\); "
                                             "fix the row, or set label.on_bad_rows=skip"):
        read_label_file(str(path), system("HDFS").label)


def test_label_file_bad_rows_skipped_and_counted_keep_every_other_label(tmp_path):
    path, broken_id = _broken_sample_labels(tmp_path)
    good, _ = read_label_file(str(SAMPLE / "anomaly_label_2k.csv"), system("HDFS").label)
    labels, skipped = read_label_file(str(path), system("HDFS", label={"on_bad_rows": "skip"}).label)
    assert skipped == 1 and broken_id not in labels
    assert labels == {k: v for k, v in good.items() if k != broken_id}  # the quote swallowed 1,999 rows before
    assert sum(labels.values()) == sum(good.values()) - good[broken_id] == 69 - good[broken_id]
    t = lines_table(["e1", "e2"], groups=[[broken_id], [next(iter(labels))]])
    _, rep = group_lines(t, system("HDFS", label={"path": str(path), "on_bad_rows": "skip"}), ["f"])
    assert rep.label_rows_skipped == 1 and rep.unlabelled_sequences == 1


@pytest.mark.parametrize("row, message", [
    ("blk_2,maybe", "label 'maybe' is in neither label.anomaly_values"),
    ("blk_2,Normal,extra", "has 3 fields, the header has 2"),
    ('blk_2,"Nor"mal', "not valid CSV"),
])
def test_label_file_rows_outside_the_allowed_set_are_errors(tmp_path, row, message):
    path = tmp_path / "labels.csv"
    path.write_text(f"BlockId,Label\nblk_1,Anomaly\n{row}\nblk_3,Normal\n")
    with pytest.raises(FusionLogError, match=None) as err:
        read_label_file(str(path), system("HDFS").label)
    assert f"{path}:3: {message}" in str(err.value), str(err.value)
