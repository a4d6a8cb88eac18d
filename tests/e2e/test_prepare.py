"""Ingestion end to end on the bundled samples: real local Ray, real drain3, real GloVe vectors."""
import csv
import json

import pyarrow.parquet as pq
import pytest

from fusionlog.cli import main
from fusionlog.config import load_config
from fusionlog.parsing import grouping_accuracy, parse_parallel, parse_sequential
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
    ga = grouping_accuracy(par.table.column("event_id").to_pylist(), seq.table.column("event_id").to_pylist())
    assert ga >= 0.95, f"{name}: parallel vs sequential grouping accuracy {ga:.3f}"
    truth_file = ROOT.parent / "shared" / "data" / name / f"{log}_structured.csv"
    if truth_file.exists():
        truth = [r["EventId"] for r in csv.DictReader(open(truth_file))]
        assert grouping_accuracy(par.table.column("event_id").to_pylist(), truth) >= 0.95


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
    assert sorted(p.name for p in root.iterdir()) == ["prepared"]  # no staging folder left behind


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
