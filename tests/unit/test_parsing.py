import gzip

import pyarrow as pa
import pytest

from fusionlog.config import FusionLogError, ParsingConfig, SystemConfig, build_typed
from fusionlog.parsing import (
    LineSplitter, add_unmatched, event_id, grouping_accuracy, load_miner, make_miner, match_contents,
    merge_templates, mine_templates, parse_sequential, read_chunks, save_miner, skip_counts,
)
from fusionlog.systems import BUILTIN_SYSTEMS

from tests.conftest import SAMPLE


def system(name: str, **over) -> SystemConfig:
    problems: list[str] = []
    cfg = build_typed(SystemConfig, {**BUILTIN_SYSTEMS[name], "name": name, "inputs": [{"path": "x"}], **over}, "s", problems)
    assert not problems
    return cfg


def test_event_id_is_text_hash():
    assert event_id("a <*> b") == event_id("a <*> b") != event_id("a <*> c")
    assert len(event_id("x")) == 16


def test_grouping_accuracy_exact():
    # truth groups {0,1} {2} {3}; prediction merges 2 and 3 -> only lines 0 and 1 correct
    assert grouping_accuracy(["a", "a", "b", "b"], [1, 1, 2, 3]) == 0.5
    assert grouping_accuracy(["x", "x", "y"], ["p", "p", "q"]) == 1.0
    with pytest.raises(ValueError):
        grouping_accuracy([1], [1, 2])


def test_splitter_counts_every_bad_line():
    raws = [
        b"- 1117838570 2005.06.03 R02 2005-06-03-15.42.50.675872 R02 RAS KERNEL INFO cache parity error corrected",
        b"KERNDTLB 1117838571 2005.06.03 R02 2005-06-03-15.42.51.675872 R02 RAS KERNEL FATAL data TLB error interrupt",
        b"- 1117838572 2005.06.03 R02 2005-06-03-15.42.52.675872 R02 RAS KERNEL FATAL",  # empty message: kept
        b"",
        b"   ",
        b"\x00\x01\x02garbage\x00",
        b"- 1 2 \xff\xfe bad utf8 here",
        b"too short",
        b"- " + b"x" * 20_000,
    ]
    batch = pa.table({"file": pa.array([0] * len(raws), pa.int32()), "line": list(range(1, len(raws) + 1)),
                      "raw": pa.array(raws, pa.binary())})
    out = LineSplitter(system("BGL"), max_line_chars=10_000)(batch)
    assert out.column("skip").to_pylist() == ["", "", "", "empty_line", "empty_line", "binary", "undecodable",
                                              "format_mismatch", "line_too_long"]
    assert out.column("alert").to_pylist()[:3] == [0, 1, 0]
    assert out.column("content").to_pylist()[:3] == ["cache parity error corrected", "data TLB error interrupt", ""]
    assert out.column("time").to_pylist()[0] == 1117838570.0
    assert skip_counts(out) == {"binary": 1, "empty_line": 2, "format_mismatch": 1, "line_too_long": 1, "undecodable": 1}


def test_splitter_extracts_block_ids():
    raw = b"081109 203615 148 INFO dfs.DataNode: Receiving blk_1 and blk_-2 and blk_1 again"
    out = LineSplitter(system("HDFS"))(pa.table({"file": pa.array([0], pa.int32()), "line": [1], "raw": [raw]}))
    assert out.column("groups").to_pylist() == [["blk_1", "blk_-2"]]


def test_read_chunks_numbers_lines_and_rejects_empty(tmp_path):
    p = tmp_path / "a.log.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(b"one\ntwo\nthree")  # no trailing newline: still three lines
    tables = list(read_chunks([str(p)], chunk_lines=2))
    assert [t.num_rows for t in tables] == [2, 1]
    assert tables[1].column("line").to_pylist() == [3]
    empty = tmp_path / "e.log"
    empty.write_text("")
    with pytest.raises(FusionLogError, match="input file is empty"):
        list(read_chunks([str(empty)], 10))
    with pytest.raises(FileNotFoundError, match="input file not found"):
        list(read_chunks([str(tmp_path / "missing.log")], 10))


def test_shard_merge_match_agrees_with_one_miner():
    lines = [f"Receiving block blk_{i} src: /10.0.0.{i % 7}:50010 dest: /10.0.0.{i % 5}:50010" for i in range(40)]
    lines += [f"PacketResponder {i % 3} for block blk_{i} terminating" for i in range(40)]
    cfg, sysc = ParsingConfig(), system("HDFS")
    shards = [mine_templates(lines[i::2], cfg, sysc) for i in range(2)]
    miner = merge_templates(shards, cfg, sysc)
    ids = match_contents(miner, lines)
    assert add_unmatched(miner, lines, ids) == 0
    assert len(set(ids)) == 2
    assert grouping_accuracy(ids, [0] * 40 + [1] * 40) == 1.0


def test_sequential_drain_matches_loghub_ground_truth_on_hdfs_2k():
    import csv

    result = parse_sequential([str(SAMPLE / "HDFS_2k.log")], system("HDFS"), ParsingConfig())
    assert result.table.num_rows == 2000 and skip_counts(result.table) == {}
    truth_file = SAMPLE.parent.parent.parent / "shared" / "data" / "HDFS" / "HDFS_2k.log_structured.csv"
    if not truth_file.exists():
        pytest.skip("loghub structured file not available")
    truth = [r["EventId"] for r in csv.DictReader(open(truth_file))]
    assert grouping_accuracy(result.table.column("event_id").to_pylist(), truth) >= 0.99


def test_miner_state_round_trip(tmp_path):
    cfg, sysc = ParsingConfig(), system("HDFS")
    miner = make_miner(cfg, sysc)
    miner.add_log_message("Deleting block blk_1 file /a/b")
    miner.add_log_message("Deleting block blk_2 file /a/c")
    save_miner(miner, tmp_path / "state.bin")
    loaded = load_miner(tmp_path / "state.bin", cfg, sysc)
    assert loaded.match("Deleting block blk_9 file /x/y").get_template() == next(iter(miner.drain.clusters)).get_template()
    with pytest.raises(FileNotFoundError):
        load_miner(tmp_path / "none.bin", cfg, sysc)
