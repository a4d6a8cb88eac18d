"""Ingestion end to end on the bundled samples: real local Ray, real drain3, real GloVe vectors."""
import csv
import gzip
import json

import pyarrow.parquet as pq
import pytest

from fusionlog.cli import main
from fusionlog.config import load_config
import fusionlog.prepare
from fusionlog.parsing import grouping_accuracy, parse_parallel, parse_sequential, serving_disagreements, skip_counts
from fusionlog.prepare import prepare

from tests.conftest import ROOT, SAMPLE


@pytest.fixture(scope="module")
def demo(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"data.output_dir={out}", "run.progress=false"])
    return out, prepare(cfg)


def test_demo_counts_and_line_accounting(demo):
    out, manifest = demo
    hdfs, bgl = manifest["systems"]["HDFS"], manifest["systems"]["BGL"]
    # data/sample/README.md: HDFS 2k -> 2,200 blocks, 69 anomalous; BGL 2k -> 100 windows, 28 anomalous
    assert (hdfs["sequences"], hdfs["anomalous"], hdfs["unlabelled"]) == (2200, 69, 0)
    assert (bgl["sequences"], bgl["anomalous"]) == (100, 28)
    for m in (hdfs, bgl):
        assert m["lines_read"] == 2000 == m["lines_parsed"] + sum(m["lines_skipped"].values())
    assert hdfs["grouping"]["lines_without_group"] == 0


def test_demo_parquet_outputs(demo):
    out, manifest = demo
    events = pq.read_table(out / "BGL" / "events.parquet")
    seqs = pq.read_table(out / "BGL" / "sequences.parquet")
    assert events.column_names == ["event_id", "template", "count", "vector"]
    assert seqs.column_names == ["seq_id", "event_ids", "label", "source_file", "line_numbers", "source_row"]
    dims = {len(v) for v in events.column("vector").to_pylist()}
    assert dims == {50}
    known = set(events.column("event_id").to_pylist())
    assert all(e in known for row in seqs.column("event_ids").to_pylist() for e in row)
    assert sum(events.column("count").to_pylist()) == 2000
    assert seqs.column("line_numbers").to_pylist()[0] == list(range(1, 21))
    assert (out / "BGL" / "drain3_state.bin").is_file()
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["embedding"]["dim"] == 50 and saved["embedding"]["events"] > 100


@pytest.mark.parametrize("name,log", [("HDFS", "HDFS_2k.log"), ("BGL", "BGL_2k.log")])
def test_parallel_scheme_agrees_with_single_drain3(ray_local, name, log):
    cfg = load_config(ROOT / "configs" / "demo.yaml")
    system = cfg.data.systems[name]
    seq = parse_sequential([str(SAMPLE / log)], system, cfg.parsing)
    par = parse_parallel([str(SAMPLE / log)], system, cfg.parsing, num_workers=2)
    for column in ("file", "line", "content", "skip"):  # same lines in the same order, no sort
        assert par.table.column(column).to_pylist() == seq.table.column(column).to_pylist(), column
    ga = grouping_accuracy(par.table.column("event_id").to_pylist(), seq.table.column("event_id").to_pylist())
    assert ga == 1.0 if name == "HDFS" else ga >= 0.99, f"{name}: parallel vs sequential grouping accuracy {ga:.4f}"
    assert serving_disagreements(par) == []  # serving matches lines to the templates training gave them
    truth_file = ROOT.parent / "shared" / "data" / name / f"{log}_structured.csv"
    if truth_file.exists():
        truth = [r["EventId"] for r in csv.DictReader(open(truth_file))]
        assert grouping_accuracy(par.table.column("event_id").to_pylist(), truth) >= 0.95


BGL_LINE = (b"- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 "
            b"RAS KERNEL INFO instruction cache parity error corrected")


@pytest.mark.parametrize("lines,parsed,skipped", [
    ([BGL_LINE], 1, {}),
    ([b"- " + b"x" * 5_000_000], 0, {"line_too_long": 1}),
    ([b"- " + b"x" * 5_000_000, BGL_LINE], 1, {"line_too_long": 1}),
])
def test_parallel_parser_handles_any_size(ray_local, tmp_path, lines, parsed, skipped):
    log = tmp_path / "bgl.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    cfg = load_config(ROOT / "configs" / "demo.yaml")
    result = parse_parallel([str(log)], cfg.data.systems["BGL"], cfg.parsing, num_workers=2)
    assert result.table.num_rows == len(lines) and skip_counts(result.table) == skipped
    assert result.table.column("line").to_pylist() == list(range(1, len(lines) + 1))
    assert len(result.templates) == parsed


def test_parallel_over_several_files_and_gzip_keeps_file_order(ray_local, tmp_path, shared_data):
    gz = shared_data / "BGL" / "BGL_20k_sample.log.gz"
    plain = tmp_path / "first.log"
    with gzip.open(gz, "rb") as fh:
        plain.write_bytes(b"".join(fh.readline() for _ in range(3000)))
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["parsing.num_shards=3"])
    system = cfg.data.systems["BGL"]
    system.max_lines = 12_000  # the plain file, then the first 9,000 lines of the gzip one
    paths = [str(plain), str(gz)]
    seq = parse_sequential(paths, system, cfg.parsing)
    par = parse_parallel(paths, system, cfg.parsing, num_workers=2)
    assert par.table.num_rows == seq.table.num_rows == 12_000
    for column in ("file", "line", "content"):
        assert par.table.column(column).to_pylist() == seq.table.column(column).to_pylist(), column
    assert grouping_accuracy(par.table.column("event_id").to_pylist(), seq.table.column("event_id").to_pylist()) >= 0.99


def test_small_inputs_parse_in_process_without_ray(tmp_path, monkeypatch):
    def no_ray(*args):
        raise AssertionError("prepare started Ray for a 2k-line input")

    monkeypatch.setattr(fusionlog.prepare, "ensure_ray", no_ray)
    one = tmp_path / "one.log"
    one.write_bytes(BGL_LINE + b"\n")  # issue 17: one BGL line with parallel parsing on
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"data.output_dir={tmp_path / 'out'}", "run.progress=false",
                                                       f"data.systems.BGL.inputs=[{{path: '{one}'}}]"])
    assert cfg.parsing.parallel
    manifest = prepare(cfg)
    bgl = manifest["systems"]["BGL"]
    assert bgl["parse_mode"].startswith("in-process") and (bgl["lines_read"], bgl["sequences"]) == (1, 1)


def test_cli_bad_inputs_give_clear_errors(tmp_path, capsys):
    empty = tmp_path / "empty.log"
    empty.write_text("")
    garbage = tmp_path / "garbage.log"
    garbage.write_bytes(b"\x00\x01\x02\x03" * 100 + b"\n" + b"\xff\xfe\xfd\n")
    base = ["prepare", "--config", str(ROOT / "configs" / "demo.yaml"), f"data.output_dir={tmp_path}/o",
            "parsing.parallel=false", "--quiet"]
    cases = {
        "input file not found": [f"data.systems.BGL.inputs=[{{path: {tmp_path}/missing.log}}]"],
        "input file is empty": [f"data.systems.BGL.inputs=[{{path: {empty}}}]"],
        "none of the 2 lines parsed": [f"data.systems.BGL.inputs=[{{path: {garbage}}}]"],
        "unknown system 'bgl2'": ["data.target=bgl2"],
        "window_size=5000 is larger than the 2000 parsed lines": [
            "data.systems.BGL.grouping.window_size=5000", "data.systems.BGL.grouping.window_step=5000",
            "data.systems.BGL.grouping.keep_partial=false"],
    }
    for expected, extra in cases.items():
        assert main(base + extra) == 2
        assert expected in capsys.readouterr().err, expected


def test_minilm_encoder(tmp_path):
    pytest.importorskip("sentence_transformers")
    cfg = load_config(ROOT / "configs" / "demo.yaml",
                      [f"data.output_dir={tmp_path}", "parsing.parallel=false", "embedding.encoder=minilm"])
    manifest = prepare(cfg)
    assert manifest["embedding"]["encoder"] == "minilm" and manifest["embedding"]["dim"] == 384
    vectors = pq.read_table(tmp_path / "HDFS" / "events.parquet").column("vector").to_pylist()
    assert len(vectors[0]) == 384


# ----------------------------------------------------------------------------- atomic outputs, wrong inputs (issue 17)


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A complete prepared directory (sequential parsing: no Ray) and the CLI arguments that wrote it."""
    root = tmp_path_factory.mktemp("atomic")
    base = ["prepare", "--config", str(ROOT / "configs" / "demo.yaml"), f"data.output_dir={root}/prepared",
            f"run.output_dir={root}", "parsing.parallel=false", "--quiet"]
    assert main(base) == 0
    return root, base


@pytest.mark.parametrize("extra, message", [
    # before: config.yaml and drain3_state.bin were overwritten, then the missing file noticed ~60 s in
    (["data.systems.BGL.inputs=[{path: /nonexistent/BGL.log}]"],
     "data.systems.BGL.inputs[0].path: input file not found: /nonexistent/BGL.log"),
    # fails after both systems were parsed: an HDFS log declared as the BGL target (before: rc 0)
    ([f"data.systems.BGL.inputs=[{{path: {SAMPLE / 'HDFS_2k.log'}}}]"],
     "BGL: 2000 of 2000 parsed lines are labelled anomalous by label.kind=first_token"),
    # a directory as input path (before: "input file not found")
    ([f"data.systems.BGL.inputs=[{{path: {SAMPLE}}}]"], "input path is a directory, expected a file"),
])
def test_a_failing_prepare_leaves_the_previous_output_byte_identical(good, capsys, extra, message):
    root, base = good
    before = _snapshot(root / "prepared")
    capsys.readouterr()
    assert main(base + extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err  # one line
    assert _snapshot(root / "prepared") == before
    assert sorted(p.name for p in root.iterdir()) == ["fusionlog.log", "prepared"]  # no staging folder left behind


def test_bad_label_rows_fail_or_are_skipped_and_counted_in_the_summary(good, tmp_path, capsys):
    root, base = good
    lines = (SAMPLE / "anomaly_label_2k.csv").read_text().splitlines()
    lines[2] = lines[2].replace(",", ',"', 1)  # the probe: one unterminated quote
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    hdfs = f"data.systems.HDFS.inputs=[{{path: {SAMPLE / 'HDFS_2k.log'}, label_file: {labels}}}]"
    out = f"data.output_dir={tmp_path}/prepared"
    capsys.readouterr()
    assert main(base + [hdfs, out]) == 2  # before: rc 0, anomalous blocks 69 -> 6, 2,001 blocks unlabelled
    assert f"label file {labels}:3: not valid CSV" in capsys.readouterr().err
    assert main(base + [hdfs, out, "data.systems.HDFS.label.on_bad_rows=skip"]) == 0
    summary = capsys.readouterr().out
    assert "label-file rows skipped (label.on_bad_rows=skip): 1" in summary
    manifest = json.loads((tmp_path / "prepared" / "manifest.json").read_text())["systems"]["HDFS"]
    assert manifest["grouping"]["label_rows_skipped"] == 1 and manifest["unlabelled"] == 1
    assert manifest["anomalous"] in (68, 69)  # every other row keeps its label
