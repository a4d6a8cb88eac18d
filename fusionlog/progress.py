"""Progress of the long stages, reported by the library and shown by whoever listens.

Shaped like ``logging``: library code starts a stage (prepare, route, train, a distillation round,
writing the artifact) and advances it; a display, installed by the CLI (``fusionlog.console``),
draws it. With no display (tests, Ray jobs, library use) a stage costs nothing and logs one line when
it ends. ``advance`` reaches the innermost open stage, so a helper deep in a loop can count its work
without being handed the stage.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional, Protocol

log = logging.getLogger(__name__)


@dataclass
class Stage:
    name: str  # e.g. "prepare", "distill 2/5"
    total: int
    unit: str = ""  # what is counted: "systems", "epochs", "seq"
    done: int = 0
    note: str = ""  # a short word on the current item or the outcome
    started: float = field(default_factory=time.monotonic)
    ended: Optional[float] = None

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def advance(self, n: int = 1, note: Optional[str] = None) -> None:
        self.update(done=self.done + n, note=note)

    def update(self, done: Optional[int] = None, total: Optional[int] = None, note: Optional[str] = None) -> None:
        if total is not None:
            self.total = total
        if done is not None:
            self.done = min(done, self.total) if self.total else done
        if note is not None:
            self.note = note
        if _display is not None and self.ended is None:
            _display.update(self)

    def close(self) -> None:
        """End the stage (idempotent); a stage left open by an error is closed by the next ``close_all``."""
        if self.ended is not None:
            return
        self.ended = time.monotonic()
        if self in _open:
            _open.remove(self)
        if _display is not None:
            _display.finish(self)
        else:
            log.info("%s: %d/%d %s in %.1fs%s", self.name, self.done, self.total, self.unit, self.elapsed,
                     f" ({self.note})" if self.note else "")


class Display(Protocol):
    """Draws stages: ``start`` when one opens, ``update`` on progress, ``finish`` when it closes."""

    def start(self, stage: Stage) -> None: ...

    def update(self, stage: Stage) -> None: ...

    def finish(self, stage: Stage) -> None: ...


_display: Optional[Display] = None
_open: list[Stage] = []


def set_display(display: Optional[Display]) -> Optional[Display]:
    """Install the display stages report to (None: none); returns the previous one."""
    global _display
    previous, _display = _display, display
    return previous


def displayed() -> bool:
    """Whether someone draws progress, so callers may skip work done only for it (e.g. relaying epochs)."""
    return _display is not None


def start(name: str, total: int, unit: str = "", note: str = "") -> Stage:
    """Open a stage; close it with ``Stage.close`` (or use ``stage``)."""
    s = Stage(name, max(0, int(total)), unit, note=note)
    _open.append(s)
    if _display is not None:
        _display.start(s)
    return s


@contextmanager
def stage(name: str, total: int, unit: str = "", note: str = "") -> Iterator[Stage]:
    s = start(name, total, unit, note)
    try:
        yield s
    finally:
        s.close()


def advance(n: int = 1, note: Optional[str] = None) -> None:
    """Advance the innermost open stage, if any."""
    if _open:
        _open[-1].advance(n, note)


def close_all() -> None:
    """Close every stage still open (after an error), innermost first."""
    for s in reversed(list(_open)):
        s.close()


# ----------------------------------------------------------------------------- text


def duration(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:03``."""
    s = int(round(max(0.0, seconds)))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def rate_text(done: int, elapsed: float, unit: str) -> str:
    """Items per second, or seconds per item when slower than one a second (an LLM, an epoch)."""
    if done <= 0 or elapsed < 0.05:  # too quick to say
        return ""
    per_second = done / elapsed
    if per_second < 1:
        return f"{elapsed / done:.1f} s/{unit.removesuffix('s') or 'item'}"
    return f"{per_second:,.0f} {unit or 'items'}/s" if per_second >= 100 else f"{per_second:.1f} {unit or 'items'}/s"


def format_status(s: Stage) -> str:
    """A stage's done/total, rate, time left (or taken) and note, for a line that also names it."""
    parts = [f"{s.done}/{s.total} {s.unit}".strip()]
    rate = rate_text(s.done, s.elapsed, s.unit)
    if rate:
        parts.append(rate)
    if s.ended is not None:
        parts.append(f"took {duration(s.elapsed)}")
    elif s.done and s.total > s.done:
        parts.append(f"{duration(s.elapsed / s.done * (s.total - s.done))} left")
    if s.note:
        parts.append(s.note)
    return "  ".join(parts)


def format_line(s: Stage) -> str:
    """One plain line for a stage (logs, pipes): its name, then ``format_status``."""
    return f"{s.name:<13} {format_status(s)}"
