"""CSV read one record per line, so a malformed row is one row (an error or a counted skip), never a swallow.

Python's csv module lets a quote that is never closed run on over the following lines, merging
every row up to the next quote into one field without a word: one unterminated quote in a label
file left 2,001 of 2,200 HDFS blocks unlabelled. Label, session and template files hold one
record per line, so each line is parsed on its own with ``strict=True`` and a bad quote is a
problem at that line.
"""
from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

from fusionlog.config import FusionLogError

csv.field_size_limit(1 << 26)  # some session rows hold thousands of ids


@dataclass
class CsvRow:
    """One non-blank line: its fields, or why it does not parse."""

    line: int  # 1-based line number in the file
    fields: list[str] = field(default_factory=list)
    error: str = ""  # "" for a row that parsed


def open_text(path: str | Path) -> IO[str]:
    """A (possibly gzipped) UTF-8 text file, after checking it exists, is a file and is not empty."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    if not path.is_file():
        raise FusionLogError(f"input path is not a file: {path}")
    if path.stat().st_size == 0:
        raise FusionLogError(f"input file is empty: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", newline="", encoding="utf-8-sig")  # -sig: a BOM (Excel) is not part of the first column name


def csv_rows(fh: IO[str], where: str) -> Iterator[CsvRow]:
    """The non-blank lines of ``fh`` as CSV rows; ``where`` names the file in errors the caller cannot skip."""
    number = 0
    try:
        for number, line in enumerate(fh, start=1):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                fields = next(csv.reader([text], strict=True), [])
            except csv.Error as exc:
                yield CsvRow(number, [], f"not valid CSV ({exc})")
                continue
            yield CsvRow(number, fields)
    except UnicodeDecodeError as exc:
        raise FusionLogError(f"{where}: not UTF-8 text after line {number} (byte {exc.start} of a block: "
                             f"{exc.reason}); convert the file to UTF-8") from None
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise FusionLogError(f"cannot read {where}: {exc}") from None


def header_and_rows(fh: IO[str], where: str) -> tuple[list[str], Iterator[CsvRow]]:
    """The first row as column names, then the data rows; a row whose field count differs gets an error."""
    rows = csv_rows(fh, where)
    first = next(rows, None)
    if first is None:
        raise FusionLogError(f"{where}: no header row")
    if first.error:
        raise FusionLogError(f"{where}:{first.line}: header {first.error}")
    header = first.fields

    def checked() -> Iterator[CsvRow]:
        for row in rows:
            if not row.error and len(row.fields) != len(header):
                row.error = f"has {len(row.fields)} fields, the header has {len(header)}"
            yield row

    return header, checked()
