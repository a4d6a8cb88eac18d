"""The CLI's console: our progress lines and results on the terminal, everything else in the run's log file.

Ray's core (C++), gRPC (Milvus Lite's client and its server process), llama.cpp and Ray Data's
progress write straight to file descriptors 1 and 2, below Python's logging, and environment
variables silence only some of them (``GRPC_VERBOSITY`` not gRPC's errors such as ``too_many_pings``,
``RAY_BACKEND_LOG_LEVEL`` not Ray's Python loggers). So for the length of a command fds 1 and 2 point
at ``<run.output_dir>/fusionlog.log``, which child processes (Milvus Lite, Ray's own) inherit too, and
the console writes to duplicates of the original descriptors. Python logging goes to the same file;
warnings of ``fusionlog`` itself are shown on the console as well. ``--verbose`` redirects nothing.
Only this module and ``fusionlog.cli`` write to the terminal.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, TextIO

from fusionlog import progress
from fusionlog.progress import Stage, format_line, format_status

LOG_FILE = "fusionlog.log"
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


@dataclass
class Terminal:
    """Where the user reads: ``out`` for results (summary, tables), ``err`` for progress, warnings, errors."""

    out: TextIO
    err: TextIO
    log_file: Optional[Path] = None
    display: Optional["LineDisplay | LiveDisplay"] = None
    _fds: list[int] = field(default_factory=list)

    def show(self, text: str) -> None:
        """A command's result on ``out``, after the progress drawn so far (a live display is closed first,
        or it would redraw over the text)."""
        if self.display is not None:
            self.display.stop()
        print(text, file=self.out, flush=True)

    def message(self, text: str) -> None:
        """A line on the error stream, above a live progress display if one is drawn."""
        if isinstance(self.display, LiveDisplay):
            self.display.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.err, flush=True)


# ----------------------------------------------------------------------------- progress displays


class LineDisplay:
    """Plain lines, for logs and pipes: one when a stage ends, and one every ``every`` seconds while it runs."""

    def __init__(self, stream: TextIO, every: float = 30.0):
        self.stream, self.every = stream, every
        self.last: dict[int, float] = {}

    def start(self, stage: Stage) -> None:
        self.last[id(stage)] = time.monotonic()

    def update(self, stage: Stage) -> None:
        now = time.monotonic()
        if now - self.last.get(id(stage), 0.0) >= self.every:
            self.last[id(stage)] = now
            print(format_line(stage), file=self.stream, flush=True)

    def finish(self, stage: Stage) -> None:
        self.last.pop(id(stage), None)
        print(format_line(stage), file=self.stream, flush=True)

    def stop(self) -> None:
        pass


class LiveDisplay:
    """rich, for a terminal: a running stage is a line redrawn in place (bar, done/total, rate, time left);
    a finished one is printed for good, as ``LineDisplay`` prints it, so warnings fall in order between them."""

    def __init__(self, stream: TextIO):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
        from rich.text import Text

        class StatusColumn(ProgressColumn):
            def render(self, task) -> Text:
                return Text(format_status(task.fields["stage"]), no_wrap=True, overflow="ellipsis")

        self.text = Text
        self.tasks: dict[int, int] = {}
        self.console = Console(file=stream, highlight=False)
        self.bars = Progress(TextColumn("{task.description:<13}"), BarColumn(bar_width=16), StatusColumn(),
                             console=self.console, redirect_stdout=False, redirect_stderr=False,
                             refresh_per_second=4)

    def start(self, stage: Stage) -> None:
        if not self.bars.live.is_started:
            self.bars.start()
        self.tasks[id(stage)] = self.bars.add_task(stage.name, total=stage.total or None, completed=stage.done,
                                                   stage=stage)

    def update(self, stage: Stage) -> None:
        task = self.tasks.get(id(stage))
        if task is not None:
            self.bars.update(task, completed=stage.done, total=stage.total or None)

    def finish(self, stage: Stage) -> None:
        task = self.tasks.pop(id(stage), None)
        if task is not None:
            self.bars.remove_task(task)
        self.console.print(self.text(format_line(stage), no_wrap=True, overflow="ellipsis"))

    def stop(self) -> None:
        """Stop redrawing; stages started later draw again below what is printed by then."""
        if self.bars.live.is_started:
            self.bars.stop()
        for task in list(self.bars.task_ids):
            self.bars.remove_task(task)
        self.tasks.clear()


# ----------------------------------------------------------------------------- logging


class _ConsoleWarnings(logging.Handler):
    """``fusionlog``'s own warnings and errors, also on the console, in plain words (unless logged with
    ``extra={"shown": True}``: already on the console)."""

    def __init__(self, terminal: Terminal):
        super().__init__(logging.WARNING)
        self.terminal = terminal
        self.addFilter(lambda record: record.name.split(".")[0] == "fusionlog" and not getattr(record, "shown", False))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.terminal.message(f"{record.levelname.lower()}: {record.getMessage()}")
        except Exception:  # a warning that cannot be shown must not end the run
            self.handleError(record)


def _route_logging(handlers: list[logging.Handler], level: int) -> list:
    """Root's handlers replaced by ``handlers``; returns what to restore."""
    root = logging.getLogger()
    saved = [root.handlers[:], root.level]
    root.handlers = handlers
    root.setLevel(level)
    logging.getLogger("drain3").setLevel(logging.WARNING)  # per-snapshot chatter
    logging.captureWarnings(True)  # torch/numpy/ray UserWarnings: to the log like any other line
    return saved


def _restore_logging(saved: list) -> None:
    root = logging.getLogger()
    for h in root.handlers:
        if h not in saved[0]:
            h.close()
    root.handlers, root.level = saved
    logging.captureWarnings(False)


def _still_shown(stream: TextIO, fd: int, saved: int) -> TextIO:
    """A stream that reaches the user once ``fd`` points at the log: a new one on the saved descriptor, or
    ``stream`` itself when it is not bound to ``fd`` (pytest's capture, an IDE's console)."""
    try:
        bound = stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        bound = False
    if not bound:
        return stream
    return os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")


@contextmanager
def session(log_file: Optional[Path], verbose: bool = False, show_progress: bool = True,
            quiet: bool = False) -> Iterator[Terminal]:
    """The console for one command: fds 1/2 into ``log_file`` (unless ``verbose``) and a progress display.

    ``quiet``: warnings only, no progress. Without ``log_file`` (a command with no run directory)
    nothing is redirected and logs go to stderr.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    redirect = log_file is not None and not verbose
    if redirect:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        saved_out, saved_err = os.dup(1), os.dup(2)
        target = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, 1)
        os.dup2(target, 2)
        os.close(target)
        terminal = Terminal(_still_shown(sys.stdout, 1, saved_out), _still_shown(sys.stderr, 2, saved_err), log_file,
                            _fds=[saved_out, saved_err])
        handlers: list[logging.Handler] = [logging.FileHandler(log_file, encoding="utf-8"), _ConsoleWarnings(terminal)]
        handlers[0].setFormatter(logging.Formatter(LOG_FORMAT))
    else:
        terminal = Terminal(sys.stdout, sys.stderr, log_file)
        handlers = [logging.StreamHandler(sys.stderr)]
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        for h in handlers:
            h.setFormatter(logging.Formatter(LOG_FORMAT))
        handlers[0].setLevel(logging.WARNING if quiet else logging.INFO)
    saved_logging = _route_logging(handlers, logging.INFO)
    if show_progress and not quiet:
        live = redirect and terminal.err.isatty() and os.environ.get("TERM") != "dumb"
        terminal.display = LiveDisplay(terminal.err) if live else LineDisplay(terminal.err)
    previous = progress.set_display(terminal.display)
    try:
        yield terminal
    finally:
        progress.close_all()
        progress.set_display(previous)
        if terminal.display is not None:
            terminal.display.stop()
        _restore_logging(saved_logging)
        sys.stdout.flush()
        sys.stderr.flush()
        if redirect:
            for stream in (terminal.out, terminal.err):
                if stream not in (sys.stdout, sys.stderr):
                    stream.close()
            saved_out, saved_err = terminal._fds
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
