import pytest

from fusionlog.config import FusionLogError, InputSpec
from fusionlog.parsing import event_id
from fusionlog.sessions import load_sessions


def test_event_id_sessions_with_base_dedup_and_unknown(tmp_path):
    tpl = tmp_path / "t.csv"
    tpl.write_text("EventId,EventTemplate\nx,first <*>\ny,second\nz,third\n")
    ses = tmp_path / "s.csv"
    ses.write_text("Sequence,label\n1 2 2,0\n3,1\n9,0\n,0\n")
    spec = InputSpec(path=str(ses), shape="sessions", sequence_column="Sequence", templates_path=str(tpl),
                     template_ids_are_rows=True, id_base=1, label_column="label")
    templates: dict = {}
    seqs, rep = load_sessions(spec, set(), templates)
    assert seqs.event_ids == [[event_id("first <*>"), event_id("second"), event_id("second")], [event_id("third")]]
    assert seqs.labels == [0, 1] and seqs.source_row == [1, 2]
    assert rep.rows_read == 4 and dict(rep.skipped) == {"unknown_event_id": 1, "empty_session": 1}
    assert templates[event_id("third")] == "third"


def test_template_text_sessions_dedup_by_id(tmp_path):
    ses = tmp_path / "s.csv"
    ses.write_text('BlockId,Label,EventTemplates\nb1,1,"[""a <*>"", ""b""]"\nb2,0,"[""b""]"\nbad,0,"[oops"\n')
    spec = InputSpec(path=str(ses), shape="sessions", id_column="BlockId", sequence_column="EventTemplates",
                     sequence_kind="templates", sequence_format="list", label_column="Label")
    seen = {"b2"}
    seqs, rep = load_sessions(spec, seen, {})
    assert seqs.seq_ids == ["b1"] and seqs.labels == [1]
    assert dict(rep.skipped) == {"duplicate_session": 1, "bad_row": 1}


def test_headerless_fixed_label_and_missing_column(tmp_path):
    tpl = tmp_path / "t.csv"
    tpl.write_text("EventId,EventTemplate\n0,a\n1,b\n")
    ses = tmp_path / "s.csv"
    ses.write_text("0 1\n1 1 0\n")
    spec = InputSpec(path=str(ses), shape="sessions", has_header=False, sequence_column="0",
                     templates_path=str(tpl), label_column="", fixed_label=1)
    seqs, _ = load_sessions(spec, set(), {})
    assert len(seqs) == 2 and seqs.labels == [1, 1]
    spec2 = InputSpec(path=str(ses), shape="sessions", sequence_column="Nope", templates_path=str(tpl))
    with pytest.raises(FusionLogError, match="missing column"):
        load_sessions(spec2, set(), {})


# ----------------------------------------------------------------------------- bad rows and labels (issue 17)


def _sessions(tmp_path, body: str) -> InputSpec:
    ses = tmp_path / "s.csv"
    ses.write_text("BlockId,EventTemplates,Label\n" + body)
    return InputSpec(path=str(ses), shape="sessions", id_column="BlockId", sequence_column="EventTemplates",
                     sequence_kind="templates", label_column="Label")


def test_a_label_outside_the_allowed_set_is_an_error(tmp_path):
    spec = _sessions(tmp_path, "b1,a b,0\nb2,a,maybe\n")
    with pytest.raises(FusionLogError, match=rf"{tmp_path / 's.csv'}:3: label 'maybe' is in neither anomaly_values"):
        load_sessions(spec, set(), {})


def test_an_unclosed_quote_is_a_counted_bad_row_and_the_next_row_is_kept(tmp_path):
    spec = _sessions(tmp_path, 'b1,"a b,1\nb2,c,0\nb3,d e f\nb4,g,1\n')
    seqs, rep = load_sessions(spec, set(), {})
    assert seqs.seq_ids == ["b2", "b4"] and seqs.labels == [0, 1]  # b2 was swallowed into b1's field before
    assert rep.rows_read == 4 and dict(rep.skipped) == {"bad_row": 2}
    assert rep.first_bad_row == f"{tmp_path / 's.csv'}:2: not valid CSV (unexpected end of data)"
