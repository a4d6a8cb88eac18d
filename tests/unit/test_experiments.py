"""The evaluation suite's loading, aggregation and report, on hand-made rows (no training, no Ray)."""
import math

import pytest

from experiments.aggregate import aggregate, aggregate_subsets, fmt_ms, mean_sd
from experiments.record import Record
from experiments.report import (format_sizes, render_paper, render_report, render_routing,
                                render_subsets, render_table, render_teacher_checks)
from experiments.suite import Suite, load_suite, run_suite
from fusionlog.config import ConfigError, FusionLogError


def _row(pair, method, seed, f1, **kw):
    return {"pair": pair, "method": method, "seed": seed, "teacher": kw.pop("teacher", "-"), "precision": f1,
            "recall": f1, "f1": f1, "auroc": kw.pop("auroc", 0.5), "zero_label": kw.pop("zero_label", True),
            "sizes": {"source_train_sequences": 100, "source_train_anomalous": 3, "target_sequences": 50,
                      "target_anomalous": 5}, **kw}


def test_mean_sd_sample_sd_and_single_value():
    m, sd, n = mean_sd([0.5, 0.7])
    assert (m, n) == (pytest.approx(0.6), 2)
    assert sd == pytest.approx(math.sqrt(0.02))  # ddof=1
    assert mean_sd([0.4]) == (0.4, 0.0, 1)
    m, sd, n = mean_sd([float("nan"), 0.2])
    assert (m, n) == (0.2, 1)
    assert n == 1 and mean_sd([])[2] == 0


def test_fmt_ms():
    assert fmt_ms(0.61234, 0.0345, 3) == "0.612 ± 0.035"
    assert fmt_ms(0.5, 0.0, 1) == "0.500"
    assert fmt_ms(float("nan"), float("nan"), 0) == "n/a"
    assert fmt_ms(93.091, 1.2, 2, 2) == "93.09 ± 1.20"


def test_aggregate_groups_by_pair_method_teacher_and_keeps_failures_out():
    rows = [_row("A->B", "meta", 0, 0.4), _row("A->B", "meta", 1, 0.6), _row("A->B", "source_only", 0, 0.1),
            {"pair": "A->B", "method": "meta", "seed": 2, "teacher": "-", "error": "RuntimeError: boom"},
            _row("A->B", "fusionlog", 0, 0.9, teacher="keyword"), _row("A->B", "fusionlog_llm", 0, 0.2,
                                                                        teacher="llama_cpp")]
    aggs = aggregate(rows)
    assert [a["method"] for a in aggs] == ["source_only", "meta", "fusionlog", "fusionlog_llm"]
    meta = aggs[1]
    assert meta["f1"][0] == pytest.approx(0.5) and meta["f1"][2] == 2
    assert meta["seeds"] == [0, 1] and meta["failed"] == ["seed 2: RuntimeError: boom"]


def test_render_table_marks_not_zero_label_sizes_and_failures():
    rows = [_row("A->B", "meta", 0, 0.4), _row("A->B", "meta", 1, 0.6),
            {"pair": "A->B", "method": "meta", "seed": 2, "teacher": "-", "error": "x"},
            _row("B (in-domain)", "in_domain", 0, 0.95, zero_label=False)]
    text = render_table(aggregate(rows))
    lines = text.splitlines()
    assert lines[0].startswith("| pair | method |") and len(lines) == 4
    assert "0.500 ± 0.141" in lines[2] and "0,1 (1 failed)" in lines[2]
    assert "src train 100/3" in lines[2] and "tgt 50/5" in lines[2]
    assert "**NO**" in lines[3] and "NOT zero-label" in lines[3]


def test_format_sizes_order_and_missing_anomalous():
    assert format_sizes({"target_sequences": 10, "source_train_sequences": 5, "source_train_anomalous": 1}) == \
        "src train 5/1, tgt 10"


def test_render_paper_gap_and_notes():
    rows = [_row("HDFS->BGL", "fusionlog", 0, 0.80, teacher="keyword"),
            _row("HDFS->BGL", "fusionlog", 1, 0.90, teacher="keyword"), _row("HDFS->BGL", "keyword", 0, 0.59)]
    table, notes = render_paper(aggregate(rows))
    line = next(li for li in table.splitlines() if li.startswith("| HDFS->BGL"))
    assert "94.65" in line and "85.00 ± 7.07" in line and "+9.65" in line
    assert not [li for li in table.splitlines() if li.startswith("| BGL->HDFS")]  # a pair the suite did not run
    assert render_paper(aggregate([_row("MyApp->BGL", "fusionlog", 0, 0.5)])) == ("", [])
    assert len(notes) == 1 and "short by 9.65" in notes[0] and "keyword rule 59.00" in notes[0]


def test_subsets_and_routing_render():
    subs = [{"pair": "A->B", "teacher": "keyword", "seed": s, "subset": "proprietary", "sequences": 40,
             "anomalous": 4, "small_f1": 0.2 + s / 10, "fused_f1": 0.5} for s in (0, 1)]
    out = render_subsets(aggregate_subsets(subs))
    assert "0.250 ± 0.071" in out and "0.500 ± 0.000" in out
    routes = [{"pair": "A->B", "teacher": "keyword", "seed": 0, "rule": "tiebreak", "max_pool": 8,
               "routing": {"tau": 0.5, "general": 60, "proprietary": 40, "distinct_scores": 7},
               "distill": {"pool_initial": 40, "pool_capped": 32, "held_out": 2, "leftovers": 1, "teacher_rate": 0.25,
                           "rounds": [{"round": 0, "pool": 6, "clean": 5}, {"round": 1, "pool": 1, "clean": 0}]},
               "round_precision": [{"round": 0, "normal_given": 4, "normal_right": 4, "anomalous_given": 1,
                                    "anomalous_right": 0}, {"round": -1, "normal_given": 0, "normal_right": 0,
                                                            "anomalous_given": 1, "anomalous_right": 1}],
               "threshold": {"chosen_on": "30 target sequences never fine-tuned on"}}]
    line = render_routing(routes).splitlines()[2]
    assert ("| 60 | 40 | 8 of 40 (cap 8), 2 held out | 0.250 | 4 (4) / 1 (0); 0/0; leftovers 0 (0) / 1 (1) | 1 | "
            "30 target sequences never fine-tuned on |") in line


def test_load_suite_checks(tmp_path):
    (tmp_path / "base.yaml").write_text("run: {seed: 0}\n")
    good = tmp_path / "s.yaml"
    good.write_text("base_config: base.yaml\nseeds: [0]\npairs: [{sources: [A], target: B}]\n")
    cfg = load_suite(good)
    assert cfg.base_config == str(tmp_path / "base.yaml") and cfg.seeds == [0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_config: base.yaml\nseeds: [0]\npairs: [{sources: [A], target: B}]\nmethods: [magic]\n")
    with pytest.raises(FusionLogError, match="unknown methods"):
        load_suite(bad)
    bad.write_text("base_config: base.yaml\nseedz: [0]\n")
    with pytest.raises(FusionLogError, match="unknown suite keys"):
        load_suite(bad)
    bad.write_text("base_config: base.yaml\nseeds: [0]\npairs: [{sources: [A], target: B}]\nteachers: [pca]\n")
    with pytest.raises(FusionLogError, match="teachers must be a mapping"):
        load_suite(bad)


def test_suite_sections_are_typed_configs(tmp_path):
    """every_run/fusionlog/llm_run are partial configs checked like a config file; the CLI's key=value go last."""
    from tests.conftest import ROOT

    good = tmp_path / "s.yaml"
    text = (f"base_config: {ROOT / 'configs' / 'demo.yaml'}\nseeds: [0]\npairs: [{{sources: [HDFS], target: BGL}}]\n"
            "every_run: {model: {hidden: 16}}\nfusionlog: {teacher: {kind: pca}, model: {hidden: 8}}\n"
            "teachers: {kw: {kind: keyword}}\n")
    good.write_text(text)
    suite = Suite(load_suite(good), ["model.layers=2"])
    assert (suite.every.model.hidden, suite.fusion_base.model.hidden, suite.fusion_base.teacher.kind) == (16, 8, "pca")
    assert suite.every.model.layers == suite.fusion_base.model.layers == 2
    assert suite.teachers["kw"].kind == "keyword"
    run = suite.cfg(suite.fusion_base, ["HDFS"], "BGL", 3, tmp_path / "run", "source_only")
    assert (run.run.seed, run.meta.method, run.run.output_dir) == (3, "source_only", str(tmp_path / "run"))
    good.write_text(text.replace("hidden: 16", "hiden: 16"))
    with pytest.raises(ConfigError, match="every_run.model.hiden: unknown key"):
        Suite(load_suite(good))


def test_teacher_checks_average_over_seeds():
    checks = [{"pair": "A->B", "teacher": "pca", "system": "A", "role": "source", "seed": s, "sequences": 10,
               "anomalous": 2,
               "precision": p, "recall": 1.0, "f1": 0.5, "auroc": 0.9} for s, p in ((0, 0.4), (1, 0.6))]
    line = render_teacher_checks(checks).splitlines()[2]
    assert line == "| A->B | pca | A (source) | 10/2 | 2 | 0.500 ± 0.141 | 1.000 ± 0.000 | 0.500 ± 0.000 | 0.900 ± 0.000 |"


def test_render_only_writes_the_report_again_from_the_saved_record(tmp_path):
    (tmp_path / "base.yaml").write_text("run: {seed: 0}\n")
    suite = tmp_path / "s.yaml"
    suite.write_text(f"base_config: base.yaml\nseeds: [0]\npairs: [{{sources: [A], target: B}}]\n"
                     f"output_dir: {tmp_path / 'out'}\nresults_md: {tmp_path / 'r.md'}\nplot: {tmp_path / 'r.png'}\n")
    with pytest.raises(FileNotFoundError, match="run the suite once"):
        run_suite(suite, render_only=True)
    rules = [{"pair": "A->B", "rule": r, "distinct_scores": d, "tau": 0.5, "general": g, "proprietary": 10 - g,
              "general_anomalous": 1, "proprietary_anomalous": 1} for r, d, g in (("paper", 1, 10), ("tiebreak", 9, 6))]
    rec = Record(settings={"command": "fusionlog evaluate --suite s.yaml", "seeds": [0], "base_config": "my.yaml"},
                 systems={"MyApp": {"inputs": ["/data/myapp.log"], "sequences": 40, "anomalous": 3, "events": 12,
                                    "grouping": "raw lines parsed by drain3, grouped by count_window (20 lines)"}},
                 rows=[_row("A->B", "keyword", 0, 0.5), _row("A->B", "fusionlog", 0, 0.6, teacher="pca")],
                 rule_checks=rules, prepare_seconds={"A_B": 1.0},
                 run_info={"date": "2026-01-02 03:04 UTC", "machine": "box"}, seconds=60.0)
    rec.save(tmp_path / "out" / "suite_record.json")
    with pytest.raises(FusionLogError, match="did not finish"):
        run_suite(suite, render_only=True)
    rec.partial = False
    rec.save(tmp_path / "out" / "suite_record.json")
    assert run_suite(suite, render_only=True) == 0
    md = (tmp_path / "r.md").read_text()
    assert "- date: 2026-01-02 03:04 UTC; suite wall time 1.0 min (prepare: A_B 1.0 s)" in md
    assert "- machine: box" in md and "| A->B | paper | 1 | 0.5000 | 10 (1) | 0 (1) |" in md
    assert "| A->B | FusionLog (fused small model) | pca |" in md
    # the data paragraph describes the systems the suite ran, from the record, nothing built in
    assert "**MyApp**: `myapp.log`; 40 sequences (3 anomalous), 12 events" in md and "KRONE" not in md
    assert "Paper's numbers" not in md  # no pair of the paper was run
    assert render_report(rec) == md


def test_gate_bolds_a_reference_not_met_and_the_teacher_bar_prints_each_margin():
    from experiments.report import render_gate, render_teacher_bar

    rows = [_row("HDFS (in-domain)", "in_domain", 0, 0.96, auroc=0.995, zero_label=False),
            _row("BGL (in-domain)", "in_domain", 0, 0.80, auroc=0.9, zero_label=False)]
    gate = render_gate(aggregate(rows), {"HDFS": {"f1": 0.97, "auroc": 0.99, "what": "plain GRU"}}).splitlines()
    assert "**NO: below the reference**" in gate[2] and "F1 ≥ 0.97, AUROC ≥ 0.99 (plain GRU)" in gate[2]
    assert gate[3].endswith("| - | - |")
    rows = [_row("A->B", "keyword", 0, 0.5), _row("A->B", "source_only", 0, 0.1),
            _row("A->B", "fusionlog", 0, 0.8, auroc=0.95, teacher="committee")]
    checks = [{"pair": "A->B", "teacher": t, "role": "target", "f1": f} for t, f in (("committee", 0.7), ("pca", 0.6))]
    line = render_teacher_bar(aggregate(rows), checks, {"B": {"f1": 0.65, "what": "Invariant Mining"}},
                              "committee").splitlines()[2]
    assert "0.650: Invariant Mining 0.650 (issue 15's table); pca 0.600 (this run)" in line
    assert "| +0.050 | +0.100 | +0.300 | +0.400 | +0.050 | yes |" in line


def test_a_failed_run_is_retried_once_but_a_config_error_is_not():
    """A meta-learning run lost to a Ray health check on a loaded machine passed when repeated (issue 17)."""
    from types import SimpleNamespace

    writes = []
    suite = SimpleNamespace(record=SimpleNamespace(rows=[]), elapsed=lambda: 0.0,
                            on_progress=lambda s, seconds: writes.append(len(s.record.rows)))
    calls = []

    def flaky():
        calls.append("flaky")
        if len(calls) == 1:
            raise RuntimeError("WorkerGroupError: A worker health check failed")

    Suite.guarded(suite, {"pair": "A->B"}, flaky)
    assert calls == ["flaky", "flaky"] and suite.record.rows == []

    def always(exc):
        calls.append(type(exc).__name__)
        raise exc

    calls.clear()
    Suite.guarded(suite, {"pair": "A->B"}, always, RuntimeError("boom"))
    Suite.guarded(suite, {"pair": "A->C"}, always, FusionLogError("bad input"))
    assert calls == ["RuntimeError", "RuntimeError", "FusionLogError"]
    assert suite.record.rows == [{"pair": "A->B", "error": "RuntimeError: boom"},
                                 {"pair": "A->C", "error": "FusionLogError: bad input"}]
    assert writes == [0, 1, 2]  # the record is written after every stage, failed or not


def test_merge_joins_parts_run_side_by_side_and_refuses_a_stage_measured_twice(tmp_path):
    (tmp_path / "base.yaml").write_text("run: {seed: 0}\n")
    suite = tmp_path / "s.yaml"
    suite.write_text(f"base_config: base.yaml\nseeds: [0]\npairs: [{{sources: [A], target: B}}]\n"
                     f"output_dir: {tmp_path / 'out'}\nresults_md: {tmp_path / 'r.md'}\nplot: ''\n")
    info = {"date": "2026-01-02 03:04 UTC", "machine": "box"}
    a = Record(settings={"command": "c", "seeds": [0], "every_run": ["train.epochs=12"]}, rows=[_row("A->B", "meta", 0, 0.4)],
               prepare_seconds={"A_B": 1.0}, run_info=info, seconds=120.0)  # stopped early: partial
    b = Record(settings={"command": "c", "seeds": [0], "every_run": ["train.epochs=30"]}, rows=[_row("B->A", "meta", 0, 0.7)],
               skipped=["LLM row B->A: skipped"], prepare_seconds={"A_B": 1.0}, run_info=info, seconds=60.0,
               partial=False)
    a.save(tmp_path / "a.json")
    b.save(tmp_path / "b.json")
    assert run_suite(suite, merge_records=[str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    merged = Record.load(tmp_path / "out" / "suite_record.json")
    assert [r["pair"] for r in merged.rows] == ["A->B", "B->A"] and merged.skipped == ["LLM row B->A: skipped"]
    assert merged.seconds == 120.0 and not merged.partial
    md = (tmp_path / "r.md").read_text()
    assert "run in 2 parts side by side" in md and "2.0 min, stopped before its end: its completed stages only" in md
    assert "PARTIAL" not in md and "its runs used train.epochs=30 instead" in md
    a.save(tmp_path / "a_again.json")
    with pytest.raises(FusionLogError, match="more than one part"):
        run_suite(suite, merge_records=[str(tmp_path / "a.json"), str(tmp_path / "a_again.json")])
    with pytest.raises(FusionLogError, match="at least two"):
        run_suite(suite, merge_records=[str(tmp_path / "a.json")])
