import gzip
import re

import pyarrow as pa
import pytest

from fusionlog.config import FusionLogError, ParsingConfig, SystemConfig, build_typed
import fusionlog.parsing as parsing
from fusionlog.parsing import (
    LineSplitter, Shard, event_columns, event_id, grouping_accuracy, input_bytes, load_miner, make_miner, merge_shards, mine_shard,
    open_lines, parse_sequential, plan_shards, read_chunks, read_shard, save_miner, serving_disagreements,
    skip_counts, with_event_ids,
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


def _one_pass(paths, sysc, cfg, num_shards):
    """The parallel scheme's three passes in one process (what parse_parallel runs on Ray)."""
    shards = plan_shards(paths, num_shards)
    mined = [mine_shard(s, sysc, cfg) for s in shards]
    miner, maps, unmatched = merge_shards([m[0] for m in mined], cfg, sysc)
    offsets = [sum(m[0].lines for t, m in zip(shards[:i], mined) if t.file == s.file) for i, s in enumerate(shards)]
    parts = [with_event_ids(part, *event_columns(part, parsing.event_ids_by_cluster(m), off))
             for (_, part), m, off in zip(mined, maps, offsets)]
    return pa.concat_tables(parts), miner, unmatched


def test_shard_merge_agrees_with_one_miner(tmp_path):
    lines = [f"081109 2036{i % 60:02d} 1 INFO dfs.DataNode: Receiving block blk_{i} src: /10.0.0.{i % 7}:50010 "
             f"dest: /10.0.0.{i % 5}:50010" for i in range(40)]
    lines += [f"081109 2036{i % 60:02d} 1 INFO dfs.DataNode: PacketResponder {i % 3} for block blk_{i} terminating"
              for i in range(40)]
    log = tmp_path / "h.log"
    log.write_text("\n".join(lines) + "\n")
    cfg, sysc = ParsingConfig(), system("HDFS")
    table, miner, unmatched = _one_pass([str(log)], sysc, cfg, num_shards=3)
    assert unmatched == 0 and table.column("line").to_pylist() == list(range(1, 81))
    events = table.column("event_id").to_pylist()
    assert grouping_accuracy(events, [0] * 40 + [1] * 40) == 1.0
    assert {c.get_template() for c in miner.drain.clusters} == {
        "Receiving block <*> src: <*> dest: <*>", "PacketResponder <*> for block <*> terminating"}


@pytest.mark.parametrize("name,log", [("HDFS", "HDFS_2k.log"), ("BGL", "BGL_2k.log")])
def test_one_pass_scheme_agrees_with_sequential_on_samples(name, log):
    cfg, sysc = ParsingConfig(), system(name)
    seq = parse_sequential([str(SAMPLE / log)], sysc, cfg)
    table, _, _ = _one_pass([str(SAMPLE / log)], sysc, cfg, num_shards=4)
    for column in ("file", "line", "content", "skip"):
        assert table.column(column).to_pylist() == seq.table.column(column).to_pylist(), column
    ga = grouping_accuracy(table.column("event_id").to_pylist(), seq.table.column("event_id").to_pylist())
    assert ga == 1.0 if name == "HDFS" else ga >= 0.99


def test_shards_hold_every_line_once(tmp_path, monkeypatch):
    monkeypatch.setattr(parsing, "_BLOCK_BYTES", 7)  # lines longer than a block, blocks ending mid-line
    lines = [b"a", b"", b"bb\r", b"x" * 40, b"ccc", b"", b"dddd d", b"e\r\r"]
    plain = tmp_path / "a.log"
    plain.write_bytes(b"\n".join(lines))  # no newline after the last line
    expect = [line.rstrip(b"\r\n") for line in lines]
    for k in range(1, 12):
        shards = plan_shards([str(plain)], k)
        got = [r for s in shards for t in read_shard(s, chunk_lines=3) for r in t.column("raw").to_pylist()]
        assert got == expect, k
    assert list(open_lines(plain)) == expect
    gz = tmp_path / "b.log.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n")
    assert plan_shards([str(gz), str(plain)], 4)[0] == Shard(0, str(gz))  # a gzip file is one shard
    sizes = [t.num_rows for t in read_shard(Shard(0, str(gz)), chunk_lines=2, limit=7)]
    assert sum(sizes) == 7 and max(sizes) <= 2
    assert input_bytes([str(gz)]) == len(b"\n".join(lines)) + 1  # from the gzip trailer, not the file size


def test_sequential_drain_matches_loghub_ground_truth_on_hdfs_2k():
    import csv

    result = parse_sequential([str(SAMPLE / "HDFS_2k.log")], system("HDFS"), ParsingConfig())
    assert result.table.num_rows == 2000 and skip_counts(result.table) == {}
    truth_file = SAMPLE.parent.parent.parent / "shared" / "data" / "HDFS" / "HDFS_2k.log_structured.csv"
    if not truth_file.exists():
        pytest.skip("loghub structured file not available")
    truth = [r["EventId"] for r in csv.DictReader(open(truth_file))]
    assert grouping_accuracy(result.table.column("event_id").to_pylist(), truth) >= 0.99


@pytest.mark.parametrize("name,log", [("HDFS", "HDFS_2k.log"), ("BGL", "BGL_2k.log")])
def test_serving_matches_the_template_training_gave_every_line(name, log):
    """Serving matches raw lines against the saved miner; training gave each line its cluster's template."""
    result = parse_sequential([str(SAMPLE / log)], system(name), ParsingConfig())
    assert serving_disagreements(result) == []


def test_splitter_empty_batch_and_bad_time():
    empty = pa.table({"file": pa.array([], pa.int32()), "line": pa.array([], pa.int64()),
                      "raw": pa.array([], pa.binary())})
    out = LineSplitter(system("HDFS"))(empty)
    assert out.num_rows == 0 and out.schema.field("groups").type == pa.list_(pa.string())
    raws = [b"- abc 2005.06.03 R02 2005-06-03-15.42.50.675872 R02 RAS KERNEL INFO ok",
            b"- 1117838570 2005.06.03 R02 2005-06-03-15.42.50.675872 R02 RAS KERNEL INFO ok"]
    out = LineSplitter(system("BGL"))(pa.table({"file": pa.array([0, 0], pa.int32()), "line": [1, 2], "raw": raws}))
    times = out.column("time").to_pylist()
    assert times[0] != times[0] and times[1] == 1117838570.0  # NaN where the timestamp is not a number


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


@pytest.mark.parametrize("name", ["HDFS", "OpenStack"])
def test_arrow_grouping_ids_are_pythons(name):
    """RE2 finds each line's first id; the answer must be exactly Python's findall, deduplicated."""
    splitter = LineSplitter(system(name))
    assert splitter._id_arrow is not None  # the built-in regexes take the Arrow path
    uuid = "0c5c5c6a-1a2b-4c3d-8e9f-0123456789ab"
    contents = ["Receiving block blk_1 src", "no id here", "blk_2 and blk_3 then blk_2 again", "", "blk_-45",
                "ünïcode blk_٣4 blk_5", "blk_6", f"[instance: {uuid}] x [instance: {uuid}]", f"[instance: {uuid}]",
                "[instance: not-a-uuid]"]
    rx = re.compile(BUILTIN_SYSTEMS[name]["grouping"]["id_regex"])
    want = [list(dict.fromkeys(m.group(1) for m in rx.finditer(c))) for c in contents]
    assert splitter._groups(pa.array(contents)).to_pylist() == want
    assert splitter._groups(pa.array(contents[1:2])).to_pylist() == [[]]


@pytest.mark.parametrize("pattern,named", [
    (r"(blk_-?\d+)", r"(?P<id>blk_-?\d+)"),
    (r"blk_-?\d+", r"(?P<id>blk_-?\d+)"),
    (r"\((\d+)\)", r"\((?P<id>\d+)\)"),
    (r"(a)(b)", None),  # two groups
    (r"[(](\d+)", None),  # a parenthesis the translation cannot place
    (r"(\d*)", None),  # matches the empty string
    (r"id=(\S+)", None),  # \s classes differ between RE2 and Python
    (r"(?<=id=)(\d+)", None),  # RE2 has no lookbehind
])
def test_arrow_id_pattern_translates_only_plain_regexes(pattern, named):
    assert parsing.arrow_id_pattern(re.compile(pattern)) == named
