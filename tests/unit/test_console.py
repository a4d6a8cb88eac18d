"""The CLI's console: fd-level output goes to the run's log file, our lines still reach the terminal."""
import logging
import os
import subprocess
import sys

from fusionlog import progress
from fusionlog.console import LineDisplay, session


def test_session_sends_fd_writes_and_library_logs_to_the_log_file(tmp_path, capfd):
    log_file = tmp_path / "run" / "fusionlog.log"
    with session(log_file) as term:
        os.write(2, b"E0000 grpc too_many_pings\n")  # what C code writes straight to fd 2
        os.write(1, b"faiss: loading AVX2\n")
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child process chatter\\n')"], check=True)
        logging.getLogger("faiss.loader").info("Loading faiss with AVX512 support.")  # a library's own logger
        logging.getLogger("fusionlog.distill").warning("distill.max_pool=10: 12 left out")
        with progress.stage("train", 2, "epochs") as s:
            s.advance(2)
        term.show("FusionLog HDFS -> BGL finished")
    out, err = capfd.readouterr()
    text = log_file.read_text()
    for noise in ("too_many_pings", "AVX2", "child process chatter", "AVX512", "12 left out"):
        assert noise in text and noise not in out + err.replace("12 left out", ""), noise
    assert out == "FusionLog HDFS -> BGL finished\n"
    assert "warning: distill.max_pool=10: 12 left out" in err  # our own warnings are also shown
    assert "train" in err and "2/2 epochs" in err  # not a terminal: one plain line when the stage ends
    os.write(2, b"after\n")  # descriptors are restored
    assert "after" in capfd.readouterr().err


def test_verbose_redirects_nothing(tmp_path, capfd):
    with session(tmp_path / "fusionlog.log", verbose=True) as term:
        os.write(2, b"raw fd 2\n")
        logging.getLogger("faiss.loader").info("faiss says")
        assert isinstance(term.display, LineDisplay)
    err = capfd.readouterr().err
    assert "raw fd 2" in err and "faiss says" in err
    assert "faiss says" in (tmp_path / "fusionlog.log").read_text()


def test_quiet_draws_no_progress(tmp_path, capfd):
    with session(tmp_path / "fusionlog.log", quiet=True) as term:
        with progress.stage("train", 1, "epochs") as s:
            s.advance()
        assert term.display is None
    assert capfd.readouterr().err == ""


def test_live_display_prints_a_finished_stage_for_good_and_messages_in_order():
    import io

    from fusionlog.console import LiveDisplay, Terminal

    stream = io.StringIO()
    display = LiveDisplay(stream)
    term = Terminal(io.StringIO(), stream, display=display)
    previous = progress.set_display(display)
    try:
        with progress.stage("prepare", 3, "steps") as s:
            s.advance(3)
        term.message("warning: something to know")
        with progress.stage("route", 10, "seq") as s:
            s.advance(10)
    finally:
        progress.set_display(previous)
        display.stop()
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    assert lines[0].startswith("prepare       3/3 steps") and lines[1] == "warning: something to know"
    assert lines[2].startswith("route         10/10 seq") and not display.bars.task_ids
