"""What the serving speed-ups must not change: one LineSplitter pass per batch gives each sequence what
``Scorer.lines`` gives it alone, mixed batches keep their order, explanations are computed for flagged
sequences only, and a relative artifact_dir is resolved where the app is built, not in the replica.
"""
from pathlib import Path

import numpy as np
import pytest

from fusionlog.scoring import Scorer
from fusionlog.serve import RequestRejected, SequenceInput, ServeArgs, parse, resolved, score_sequences

from tests.serve_artifact import bgl_lines, build_demo_artifact

UNKNOWN = ("- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 "
           "RAS KERNEL INFO quantum flux capacitor desynchronised beyond repair")


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory):
    return build_demo_artifact(tmp_path_factory.getbasetemp() / "serve_artifact")


@pytest.fixture(scope="module")
def model(artifact_dir):
    return Scorer.load(artifact_dir)


def _same(a, b) -> bool:
    return (np.array_equal(a.rows, b.rows) and a.positions == b.positions and a.unknown == b.unknown
            and a.skipped == b.skipped)


def test_lines_batch_is_lines_of_each_sequence(model):
    """Windows with a skipped line, an unknown line, out-of-time-order lines and the caller's own positions."""
    sequences = [
        (bgl_lines(20, 0), list(range(20))),
        (bgl_lines(7, 300) + ["not a BGL line", UNKNOWN], [10 * i for i in range(9)]),
        (list(reversed(bgl_lines(5, 40))), [4, 3, 2, 1, 0]),
        (["", "   "], [0, 1]),
    ]
    batched = model.lines_batch(sequences)
    alone = [model.lines(items, positions) for items, positions in sequences]
    assert len(batched) == 4 and all(_same(b, a) for b, a in zip(batched, alone))
    assert [u["line"] for u in batched[1].unknown] == [80] and batched[1].skipped == [
        {"line": 70, "reason": "format_mismatch"}]
    assert len(batched[3].rows) == 0 and [s["reason"] for s in batched[3].skipped] == ["empty_line"] * 2


def test_a_mixed_batch_keeps_its_order(model):
    events = [model.artifact.table.templates[r] for r in model.lines(bgl_lines(20, 20), list(range(20))).rows]
    batch = [SequenceInput("a", "lines", bgl_lines(20, 0), list(range(20))),
             SequenceInput("b", "events", events, list(range(20))),
             SequenceInput("c", "lines", bgl_lines(20, 20), list(range(20)))]
    got = parse(model, batch)
    assert _same(got[0], model.lines(batch[0].items, batch[0].positions))
    assert _same(got[1], model.events(events, list(range(20))))
    assert np.array_equal(got[2].rows, got[1].rows)
    replies = score_sequences(model, batch)
    assert [r["id"] for r in replies] == ["a", "b", "c"] and replies[1]["probability"] == replies[2]["probability"]


def test_events_only_artifact_refuses_a_batch_with_raw_lines(model, tmp_path):
    import shutil

    art = tmp_path / "art"
    shutil.copytree(model.path, art)
    (art / "drain3_state.bin").unlink()
    with pytest.raises(RequestRejected, match="only 'events' are accepted") as err:
        parse(Scorer.load(art), [SequenceInput("s", "lines", bgl_lines(3), [0, 1, 2])])
    assert err.value.status == 422


@pytest.mark.parametrize("threshold, explained", [(1.0, False), (0.0, True)])
def test_explanations_only_for_flagged_sequences(model, monkeypatch, threshold, explained):
    scorer = Scorer.load(model.path, threshold=threshold)
    calls = []
    monkeypatch.setattr(Scorer, "bottleneck", lambda self, p: calls.append("bottleneck") or {"line": 0})
    monkeypatch.setattr(Scorer, "nearest", lambda self, p: calls.append("nearest") or [])
    out = scorer.score(scorer.lines_batch([(bgl_lines(20, 20 * k), list(range(20))) for k in range(3)]))
    assert [s.anomalous for s in out] == [explained] * 3
    assert calls == (["bottleneck", "nearest"] * 3 if explained else [])
    assert all((s.bottleneck is not None) == explained for s in out)


def test_build_app_resolves_a_relative_artifact_dir_where_it_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # build_app binds resolved(args); binding itself (Serve pickles the deployment) is exercised by the e2e tests
    assert resolved(ServeArgs(artifact_dir="outputs/demo/fused")).artifact_dir == str(
        tmp_path.resolve() / "outputs" / "demo" / "fused")
    assert Path(resolved(ServeArgs(artifact_dir="/abs/dir")).artifact_dir) == Path("/abs/dir")
