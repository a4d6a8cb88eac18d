"""Serving without Serve: request decoding and limits, grouping, the scoring path, bottleneck and knowledge base.

The artifact is a real one (tests/serve_artifact.py: demo prepare + a few training steps, ~15 s once
per session), so raw BGL lines go through the saved drain3 state exactly as a replica parses them.
"""
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fusionlog.artifact import KNOWLEDGE_BASE
from fusionlog.dataset import load_prepared
from fusionlog.scoring import Scorer
from fusionlog.serve import (RequestRejected, ScoreRequest, ServeArgs, ServeLimits, SequenceInput, decode_request,
                             expand_request, model_info, score_sequences)

from tests.serve_artifact import bgl_lines, build_demo_artifact

NEW_LINE = ("- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 "
            "RAS KERNEL INFO quantum flux capacitor desynchronised beyond repair")


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory):
    return build_demo_artifact(tmp_path_factory.getbasetemp() / "serve_artifact")


@pytest.fixture(scope="module")
def model(artifact_dir):
    return Scorer.load(artifact_dir)


def _decode(obj, **limits) -> ScoreRequest:
    return decode_request(json.dumps(obj).encode() if not isinstance(obj, bytes) else obj, ServeLimits(**limits))


# ----------------------------------------------------------------------------- decoding and limits


@pytest.mark.parametrize("body, status, message", [
    (b'{"lines": ["a"', 400, "not valid JSON"),
    (b"\xff\xfe", 400, "not valid JSON"),
    ([1, 2], 422, "must be a JSON object, got list"),
    ({"lines": [1, 2]}, 422, "lines.0: Input should be a valid string"),
    ({"lines": "one line"}, 422, "lines: Input should be a valid list"),
    ({"sequences": []}, 422, "'sequences' is empty"),
    ({"lines": []}, 422, "'lines' is empty"),
    ({}, 422, "exactly one of 'sequences' or 'lines'"),
    ({"lines": ["a"], "sequences": [{"lines": ["a"]}]}, 422, "exactly one of 'sequences' or 'lines'"),
    ({"sequences": [{"id": "x", "lines": []}]}, 422, "sequences.0: Value error, 'lines' is empty"),
    ({"sequences": [{"lines": ["a"], "events": ["b"]}]}, 422, "exactly one of 'lines'"),
    ({"sequences": [{"id": 3, "lines": ["a"]}]}, 422, "sequences.0.id: Input should be a valid string"),
    ({"sequences": [{"lines": ["a"], "label": 1}]}, 422, "sequences.0.label: Extra inputs are not permitted"),
])
def test_bad_requests_are_4xx_with_a_message(body, status, message):
    with pytest.raises(RequestRejected, match=None) as err:
        _decode(body)
    assert err.value.status == status and message in str(err.value), str(err.value)


@pytest.mark.parametrize("body, limits, message", [
    ({"lines": ["x" * 50]}, {"max_body_bytes": 40}, "limits.max_body_bytes is 40"),
    ({"lines": ["a"] * 6}, {"max_lines_per_request": 5}, "6 lines/events in the request; limits.max_lines_per_request is 5"),
    ({"sequences": [{"lines": ["a"] * 3}, {"events": ["b"] * 3}]}, {"max_lines_per_request": 5}, "6 lines/events"),
    ({"sequences": [{"lines": ["a"]}] * 3}, {"max_sequences_per_request": 2}, "3 sequences; limits.max_sequences_per_request is 2"),
    ({"sequences": [{"lines": ["a"]}, {"events": ["ok", "y" * 11]}]}, {"max_line_chars": 10}, "sequences[1].events[1] has 11 characters"),
])
def test_limits_are_413_naming_the_limit(body, limits, message):
    with pytest.raises(RequestRejected) as err:
        _decode(body, **limits)
    assert err.value.status == 413 and message in str(err.value), str(err.value)


def test_serve_args_defaults_and_unknown_keys():
    args = ServeArgs.model_validate({"artifact_dir": "a", "limits": {"max_lines_per_request": 7}})
    assert args.limits.max_lines_per_request == 7 and args.limits.max_body_bytes == 4 * 1_048_576
    assert args.batching.max_batch_size == 16 and args.threshold is None
    with pytest.raises(ValueError, match="max_batch_sise"):
        ServeArgs.model_validate({"artifact_dir": "a", "batching": {"max_batch_sise": 4}})
    with pytest.raises(ValueError, match="greater than 0"):
        ServeArgs.model_validate({"artifact_dir": "a", "limits": {"max_body_bytes": 0}})


# ----------------------------------------------------------------------------- scoring


def test_raw_lines_score_like_the_prepared_sequence(model, artifact_dir):
    """Training/serving consistency: window 0 of BGL_2k scored from raw lines == from prepared events."""
    prepared = artifact_dir.parent / "prepared"
    system = load_prepared(prepared, "BGL", read_labels=False)
    rows, unknown = model.artifact.reindex(system)
    assert unknown == 0
    expected, _ = model.artifact.score(rows[:2])
    got = score_sequences(model, [SequenceInput("w0", "lines", bgl_lines(20, 0), list(range(20))),
                                  SequenceInput("w1", "lines", bgl_lines(20, 20), list(range(20)))])
    assert [g["probability"] for g in got] == [round(float(p), 6) for p in expected]
    assert all(g["known_events"] == 20 and g["unknown_events"] == [] and g["skipped_lines"] == [] for g in got)
    assert all(g["threshold"] == model.threshold == model.artifact.threshold for g in got)
    events = [model.artifact.table.templates[r] for r in rows[0]]
    by_events = score_sequences(model, [SequenceInput("e", "events", events, list(range(20)))])[0]
    assert by_events["probability"] == got[0]["probability"] and by_events["unknown_events"] == []


def test_ungrouped_lines_use_the_systems_window_rule_and_report_what_they_drop(model):
    lines = bgl_lines(45, 100) + ["not a BGL line", NEW_LINE]
    expanded = expand_request(model, ScoreRequest(lines=lines))
    assert [(s.id, len(s.items)) for s in expanded.sequences] == [("request#w0", 20), ("request#w1", 20),
                                                                   ("request#w2", 6)]
    # inside a window lines are ordered by timestamp, as prepare does; NEW_LINE is the oldest
    assert expanded.sequences[2].positions == [46, 40, 41, 42, 43, 44]
    assert expanded.ungrouped == [{"line": 45, "reason": "format_mismatch"}]
    last = score_sequences(model, expanded.sequences)[2]
    assert last["known_events"] == 5
    assert last["unknown_events"] == [{"line": 46, "text": "quantum flux capacitor desynchronised beyond repair",
                                       "template": None, "reason": "no_matching_template"}]


def test_flagged_sequences_get_the_bottleneck_event(model):
    model = Scorer.load(model.path, threshold=0.0)
    seq = SequenceInput("s", "lines", bgl_lines(20, 60) + ["garbage"], list(range(21)))
    out = score_sequences(model, [seq])[0]
    assert out["label"] == "anomalous" and out["threshold"] == 0.0
    assert out["skipped_lines"] == [{"line": 20, "reason": "format_mismatch"}]
    b = out["bottleneck"]
    parsed_rows = [model.index[e] for e in out["event_ids"]]
    assert b["similarity"] == round(float(model.similarity[parsed_rows].min()), 6)
    assert model.similarity[model.index[b["event_id"]]] == model.similarity[parsed_rows].min()
    source = model.artifact.table.vectors[model.artifact.is_source]
    unit = model.artifact.table.vectors / np.linalg.norm(model.artifact.table.vectors, axis=1, keepdims=True)
    src = source / np.linalg.norm(source, axis=1, keepdims=True)
    np.testing.assert_allclose(model.similarity, (unit @ src.T).max(axis=1), atol=1e-6)  # against the source events
    assert out["nearest_sequences"] is None  # no knowledge base in this artifact


def test_a_sequence_of_only_unknown_events_is_unscored(model):
    out = score_sequences(model, [SequenceInput("u", "events", ["never <*> seen", "nor this"], [0, 1])])[0]
    assert out["label"] == "unscored" and out["probability"] is None and out["bottleneck"] is None
    assert [u["reason"] for u in out["unknown_events"]] == ["template_not_in_model"] * 2


def test_knowledge_base_gives_the_nearest_labelled_sequences(model, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(model.path, art)
    vectors = model.artifact.table.vectors
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    kb_vectors = [unit[:3].mean(axis=0), unit[20:25].mean(axis=0), -unit[0]]
    kb = pa.table({"seq_id": ["a", "b", "c"], "label": pa.array([0, 1, 1], pa.int8()), "content": ["x", "y", "z"],
                   "confidence": [0.9, 0.8, 0.7],
                   "vector": pa.array([v.tolist() for v in kb_vectors], pa.list_(pa.float32()))})
    pq.write_table(kb, art / KNOWLEDGE_BASE)
    flagged = Scorer.load(art, threshold=0.0, kb_top_k=2)
    assert model_info(flagged)["knowledge_base"] == {"rows": 3}
    templates = [flagged.artifact.table.templates[r] for r in range(20, 25)]
    out = score_sequences(flagged, [SequenceInput("q", "events", templates, list(range(5)))])[0]
    near = out["nearest_sequences"]
    assert [n["seq_id"] for n in near] == ["b", "a"] and near[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert near[0] == {"seq_id": "b", "label": 1, "confidence": 0.8, "content": "y", "similarity": near[0]["similarity"]}


def test_artifact_without_drain_state_accepts_events_only(model, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(model.path, art)
    (art / "drain3_state.bin").unlink()
    m = Scorer.load(art)
    assert not model_info(m)["raw_lines"] and "drain3_state.bin" in m.notes[0]
    with pytest.raises(RequestRejected, match="only 'events' are accepted"):
        expand_request(m, ScoreRequest(lines=bgl_lines(3)))
    with pytest.raises(RequestRejected, match="only 'events' are accepted"):
        score_sequences(m, [SequenceInput("s", "lines", bgl_lines(3), [0, 1, 2])])
    template = m.artifact.table.templates[-1]
    assert score_sequences(m, [SequenceInput("s", "events", [template], [0])])[0]["known_events"] == 1


def test_missing_artifact_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="artifact_dir not found: .*nowhere"):
        Scorer.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing model.pt"):
        Scorer.load(tmp_path / "empty")


# ----------------------------------------------------------------------------- depth and size (issue 17)


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,  # past Python's recursion limit: was a 500 RecursionError
    b'{"lines": ' + b"[" * 33 + b"]" * 33 + b"}",  # 34 deep, within the recursion limit
    b'{"sequences": [{"lines": ["a"], "id": "x"}], "x": ' + b"{\"a\": " * 40 + b"1" + b"}" * 41,
])
def test_too_deep_json_is_400(body):
    with pytest.raises(RequestRejected) as err:
        _decode(body)
    assert err.value.status == 400 and "limits.max_json_depth=32" in str(err.value), str(err.value)


def test_unparseable_numbers_are_400():
    with pytest.raises(RequestRejected) as err:
        _decode(b'{"lines": [' + b"9" * 5000 + b"]}")  # past Python's 4,300-digit int limit: a ValueError
    assert err.value.status == 400 and "not valid JSON" in str(err.value)


def test_the_default_body_limit_admits_the_default_line_limit_of_real_bgl_lines(model):
    """10,000 real BGL lines (the 2k sample five times) are 1,605,771 bytes of JSON: 413 at the old 1 MiB."""
    limits = ServeLimits()
    lines = bgl_lines(2000) * 5
    assert len(lines) == limits.max_lines_per_request
    grouped = json.dumps({"lines": lines}).encode()
    assert 1_048_576 < len(grouped) < limits.max_body_bytes
    expanded = expand_request(model, decode_request(grouped, limits))
    assert len(expanded.sequences) == 500 and expanded.ungrouped == []
    by_client = json.dumps({"sequences": [{"id": str(i), "lines": lines[i * 20:(i + 1) * 20]} for i in range(500)]})
    assert len(expand_request(model, decode_request(by_client.encode(), limits)).sequences) == 500
