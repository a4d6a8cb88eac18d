"""Fuzzing the input boundary with Hypothesis (issue 17): the line reader, the session reader, the config
loader and the request model.

Random bytes and structured garbage must only ever raise the project's own errors (FusionLogError,
ConfigError, RequestRejected; FileNotFoundError for a missing path), and every line read must be
accounted for: lines read = parsed + skipped, session rows read = kept + skipped. Each test is
bounded (max_examples, no deadline), so the module stays well under a minute on 2 cores.

The default run is derandomized, so CI is reproducible; explore with fresh random inputs by
``FUZZ_RANDOM=1 FUZZ_EXAMPLES=2000 pytest tests/unit/test_fuzz.py`` (about a minute) and pin what
it finds as an ``@example``.
"""
import json
import os
import string

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fusionlog.config import (RANGES, ConfigError, FusionLogError, InputSpec, ParsingConfig, SystemConfig, build_typed,
                              load_config)
from fusionlog.parsing import SKIP_REASONS, LineSplitter, parse_sequential, read_chunks
from fusionlog.serve import RequestRejected, ScoreRequest, ServeLimits, decode_request, expand_request
from fusionlog.sessions import load_sessions
from fusionlog.systems import BUILTIN_SYSTEMS

from tests.conftest import ROOT

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None, database=None,
                derandomize=not os.environ.get("FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TEXT = st.text(st.characters(codec="utf-8"), max_size=200)
LOG_BYTES = st.sampled_from([b"- 1117838570 2005.06.03 R02 2005-06-03-15.42.50.675872 R02 RAS KERNEL INFO cache error",
                             b"081109 203615 148 INFO dfs.DataNode$PacketResponder: blk_-160 terminating",
                             b"\xc2\xa0", b"\xe3\x80\x80 x", b"\x00\x01", b"\xff\xfe", b"  ", b"\t-\tx"])


def _system(name: str, **over) -> SystemConfig:
    problems: list[str] = []
    body = {**BUILTIN_SYSTEMS.get(name, {}), "name": name, "inputs": [{"path": "x"}], **over}
    system = build_typed(SystemConfig, body, "s", problems)
    assert not problems, problems
    return system


SYSTEMS = [_system("BGL"), _system("HDFS"), _system("OpenStack"),
           _system("Free", log_format="<Content>", label={"kind": "first_token"},
                   grouping={"kind": "count_window", "window_size": 3, "window_step": 3})]


# ----------------------------------------------------------------------------- the line reader


@FUZZ
@given(lines=st.lists(st.one_of(st.binary(max_size=160), LOG_BYTES), max_size=30), system=st.sampled_from(SYSTEMS),
       max_chars=st.integers(1, 200), chunk=st.integers(1, 7))
@example(lines=[b"\xc2\xa0"], system=SYSTEMS[3], max_chars=200, chunk=1)  # was IndexError: no first token
def test_line_reader_accounts_for_every_line(tmp_path, lines, system, max_chars, chunk):
    path = tmp_path / "fuzz.log"
    blob = b"\n".join(lines)
    path.write_bytes(blob)
    expected = len(blob.split(b"\n")) - blob.endswith(b"\n") if blob else 0
    try:
        tables = [LineSplitter(system, max_chars)(t) for t in read_chunks([str(path)], chunk)]
    except FusionLogError:
        assert not blob  # the only refusal: an empty file
        return
    skips = [s for t in tables for s in t.column("skip").to_pylist()]
    assert len(skips) == expected  # lines read = parsed + skipped, nothing lost between chunks
    assert set(skips) <= {"", *SKIP_REASONS}


@settings(FUZZ, max_examples=40)
@given(lines=st.lists(st.one_of(st.binary(max_size=120), LOG_BYTES), min_size=1, max_size=20),
       system=st.sampled_from(SYSTEMS))
def test_parsing_gives_every_parsed_line_an_event(tmp_path, lines, system):
    path = tmp_path / "fuzz.log"
    blob = b"\n".join(lines) + b"\n"
    path.write_bytes(blob)
    try:
        result = parse_sequential([str(path)], system, ParsingConfig(parallel=False))
    except FusionLogError:
        return
    rows = result.table.select(["skip", "event_id"]).to_pylist()
    assert len(rows) == blob.count(b"\n")
    assert all((r["skip"] == "") == (r["event_id"] != "") for r in rows)
    assert {r["event_id"] for r in rows} - {""} <= set(result.templates)


# ----------------------------------------------------------------------------- the session reader


CSV_CELL = st.one_of(TEXT, st.sampled_from(['"', '""', '"a b', "[1, 2]", '["x", "y"]', "0", "1", "maybe", "a,b", "9 9"]))


@FUZZ
@given(rows=st.lists(st.lists(CSV_CELL, min_size=1, max_size=4), max_size=12), header=st.booleans(),
       kind=st.sampled_from(["event_ids", "templates"]), fmt=st.sampled_from(["space", "list"]),
       max_rows=st.integers(0, 5))
@example(rows=[["b1", '"a', "1"], ["b2", "c", "0"]], header=True, kind="templates", fmt="space", max_rows=0)
@example(rows=[["b1", "a", "1"]], header=True, kind="event_ids", fmt="space", max_rows=0)  # short row: was None.strip()
def test_session_reader_accounts_for_every_row(tmp_path, rows, header, kind, fmt, max_rows):
    text = ("Id,Seq,Label\n" if header else "") + "\n".join(",".join(r) for r in rows)
    (tmp_path / "s.csv").write_text(text, encoding="utf-8")
    (tmp_path / "t.csv").write_text("EventId,EventTemplate\n0,a <*>\n1,b\n2,c\n9,\"d, e\"\n", encoding="utf-8")
    spec = InputSpec(path=str(tmp_path / "s.csv"), shape="sessions", has_header=header,
                     id_column="Id" if header else "", sequence_column="Seq" if header else "1",
                     label_column="Label" if header else "", fixed_label=-1 if header else 1,
                     sequence_kind=kind, sequence_format=fmt, templates_path=str(tmp_path / "t.csv"),
                     max_rows=max_rows)
    try:
        seqs, report = load_sessions(spec, set(), {})
    except FusionLogError:
        return
    with open(tmp_path / "s.csv", newline="", encoding="utf-8-sig") as fh:
        lines = sum(1 for line in fh if line.rstrip("\r\n").strip()) - header
    assert report.rows_read == (min(lines, max_rows) if max_rows else lines)
    assert report.rows_read == len(seqs) + sum(report.skipped.values())
    assert set(seqs.labels) <= {0, 1}


# ----------------------------------------------------------------------------- the config loader


BASE = {"data": {"sources": ["HDFS"], "target": "BGL",
                 "systems": {"HDFS": {"inputs": [{"path": "a.log"}]}, "BGL": {"inputs": [{"path": "b.log"}]}}}}
KEYS = sorted({r.key for r in RANGES} | {"data.target", "data.sources", "data.systems.BGL.grouping.window_size",
                                         "data.systems.BGL.label.kind", "data.systems.HDFS.inputs",
                                         "data.systems.New.log_format", "teacher.members", "embedding.encoder",
                                         "data.output_dir", "run.output_dir", "llm.model_path", "tune.beta", "data"})
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), TEXT)
YAML_VALUE = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(TEXT, inner, max_size=3)), max_leaves=8)


def _load(tmp_path, text, overrides=()):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        return load_config(path, list(overrides))
    except (ConfigError, FusionLogError, FileNotFoundError):
        return None


@FUZZ
@given(text=st.one_of(TEXT, st.text(st.sampled_from(string.printable + "{}[]:-&*!|>'\"%@`#,?"), max_size=200)))
@example(text="run: {seed: \x1f}")  # was yaml.reader.ReaderError
@example(text="run:\n  seed: 2001-02-30\n")  # was ValueError from the date constructor
def test_config_loader_on_random_text(tmp_path, text):
    _load(tmp_path, text)


@FUZZ
@given(tree=st.dictionaries(st.sampled_from(["data", "run", "parsing", "model", "llm", "x"]), YAML_VALUE, max_size=4))
def test_config_loader_on_random_yaml(tmp_path, tree):
    _load(tmp_path, yaml.safe_dump(tree, allow_unicode=True))


@FUZZ
@given(pairs=st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), TEXT), st.one_of(TEXT, SCALAR.map(json.dumps))),
                      max_size=4))
@example(pairs=[("data.systems.New", "5")])  # was TypeError: argument of type 'int' is not iterable
@example(pairs=[("data.output_dir", '"a\\0b"')])  # a NUL in a path: was ValueError from the OS
@example(pairs=[("data.output_dir", '"\\uD800"')])  # a lone surrogate: was UnicodeEncodeError
def test_config_loader_on_random_overrides(tmp_path, pairs):
    cfg = _load(tmp_path, yaml.safe_dump(BASE), [f"{k}={v}" for k, v in pairs])
    if cfg is not None:
        assert cfg.data.target in cfg.data.systems


# ----------------------------------------------------------------------------- the request model


JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
                    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
                    max_leaves=20)
REQUEST = st.one_of(
    st.fixed_dictionaries({"lines": st.lists(TEXT, max_size=5)}),
    st.fixed_dictionaries({"sequences": st.lists(st.fixed_dictionaries(
        {"lines": st.lists(TEXT, max_size=4)}, optional={"id": st.one_of(TEXT, st.integers()), "events": JSON}),
        max_size=4)}),
    st.dictionaries(st.sampled_from(["lines", "sequences", "id", "events"]), JSON, max_size=3))
LIMITS = ServeLimits(max_body_bytes=16_384, max_lines_per_request=8, max_line_chars=50, max_sequences_per_request=3,
                     max_json_depth=5)


def _decode(body: bytes):
    try:
        req = decode_request(body, LIMITS)
    except RequestRejected as exc:
        assert exc.status in (400, 413, 422)
        return None
    assert isinstance(req, ScoreRequest)
    if req.sequences is not None:
        expanded = expand_request(None, req)  # client-grouped sequences need no model
        assert sum(len(s.items) for s in expanded.sequences) <= LIMITS.max_lines_per_request
    return req


@FUZZ
@given(body=st.one_of(st.binary(max_size=300), TEXT.map(lambda t: t.encode("utf-8"))))
def test_request_model_on_random_bytes(body):
    _decode(body)


@FUZZ
@given(data=st.one_of(JSON, REQUEST), pad=st.integers(0, 8))
@example(data={"lines": ["a"]}, pad=5_000)  # was a 500 RecursionError
def test_request_model_on_random_json(data, pad):
    _decode(("[" * pad + json.dumps(data) + "]" * pad).encode("utf-8"))


def test_fuzz_targets_accept_good_input(tmp_path):
    """The fuzzed paths do reach success (a fuzz test whose every input is refused proves little)."""
    assert _decode(json.dumps({"sequences": [{"lines": ["a", "b"]}]}).encode()) is not None
    assert _load(tmp_path, yaml.safe_dump(BASE)) is not None
    assert load_config(ROOT / "configs" / "demo.yaml") is not None
    with pytest.raises(ConfigError):
        load_config(ROOT / "configs" / "demo.yaml", ["parsing.max_children=-1"])
