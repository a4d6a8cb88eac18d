"""Progress stages: what the library reports and how a stage reads as one plain line."""
import pytest

from fusionlog import progress
from fusionlog.progress import Stage, duration, format_line, rate_text


class Recorder:
    def __init__(self):
        self.events = []

    def start(self, s):
        self.events.append(("start", s.name, s.done))

    def update(self, s):
        self.events.append(("update", s.name, s.done))

    def finish(self, s):
        self.events.append(("finish", s.name, s.done))


@pytest.fixture
def recorder():
    rec = Recorder()
    previous = progress.set_display(rec)
    yield rec
    progress.close_all()
    progress.set_display(previous)


def test_duration_and_rate_read_like_a_person_would_say_them():
    assert [duration(s) for s in (0, 42.4, 725, 3723)] == ["0:00", "0:42", "12:05", "1:02:03"]
    assert rate_text(10, 40.0, "epochs") == "4.0 s/epoch"  # slower than one a second: seconds per item
    assert rate_text(30, 10.0, "seq") == "3.0 seq/s"
    assert rate_text(150000, 1.0, "seq") == "150,000 seq/s"
    assert rate_text(5, 0.01, "seq") == "" and rate_text(0, 10.0, "seq") == ""


def test_format_line_running_and_finished():
    s = Stage("distill 2/5", 40, "seq", done=10, note="round 2", started=100.0)
    s.ended = 120.0  # 10 done in 20 s
    assert format_line(s) == "distill 2/5   10/40 seq  2.0 s/seq  took 0:20  round 2"
    s.ended = None
    s.started -= 1e9  # running for ages: the line says the time left, not the time taken
    assert "left" in format_line(s) and "took" not in format_line(s)


def test_advance_reaches_the_innermost_open_stage(recorder):
    with progress.stage("outer", 2, "steps") as outer:
        with progress.stage("inner", 3, "seq"):
            progress.advance(2)
        progress.advance()
    assert outer.done == 1
    assert recorder.events == [("start", "outer", 0), ("start", "inner", 0), ("update", "inner", 2),
                               ("finish", "inner", 2), ("update", "outer", 1), ("finish", "outer", 1)]
    progress.advance()  # nothing open: a no-op


def test_done_never_passes_total_and_a_stage_closes_once(recorder):
    s = progress.start("write", 3, "steps")
    s.advance(5)
    assert s.done == 3
    s.close()
    s.close()
    assert [e[0] for e in recorder.events].count("finish") == 1


def test_without_a_display_a_stage_only_logs_its_end(caplog):
    assert not progress.displayed()
    with caplog.at_level("INFO", logger="fusionlog.progress"):
        with progress.stage("route", 100, "seq") as s:
            s.advance(100)
    assert "route: 100/100 seq in" in caplog.text
