"""Reading trace rows with their line numbers and turning bad fields into precise errors.

Every loader reads through :class:`RowReader` and hands jobs to :class:`JobCollector`, so all
traces share one policy for bad rows: by default a bad row is skipped and counted in the
workload's :class:`~simulator.job.SkipSummary` (reason plus the first few ``file:line``); with
``strict=True`` the first bad row raises :class:`~simulator.job.TraceError`.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from phalanx.simulator.job import Job, SkipSummary, TraceError

T = TypeVar("T")


class RowError(ValueError):
    """One field of one row is wrong; the reader adds the file and line. ``value`` is kept
    apart from the message so that skipped rows group by what was wrong, not by value."""

    def __init__(self, field: str | None, message: str, value: str | None = None):
        self.field = field
        self.message = message
        self.value = value
        super().__init__(message if value is None else f"{value!r} {message}")


GZIP_MAGIC = b"\x1f\x8b"
MAX_WHOLE = 2**53
"""Largest whole number a cell may hold: cells are read as floats, exact up to here."""


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file, gunzipping ``*.gz`` transparently."""
    if not path.exists():
        raise TraceError(str(path), "no such file")
    if path.is_dir():
        raise TraceError(str(path), "is a folder, expected a file")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


@contextmanager
def text_errors(path: Path, line: Callable[[], int | None] = lambda: None) -> Iterator[None]:
    """Turn what a binary, compressed or corrupt file raises while it is read as text into a
    :class:`TraceError` naming the file (and the line, where ``line()`` knows it): the bare
    codec, csv and gzip messages say neither, and ``csv.Error`` is no ``ValueError`` at all."""
    try:
        yield
    except UnicodeDecodeError as err:
        raise TraceError(str(path), _not_text(path, err)) from None
    except csv.Error as err:
        raise TraceError(str(path), f"cannot be read as CSV: {err}", line=line()) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise TraceError(str(path), f"is not a readable gzip file: {err}") from None


def _not_text(path: Path, err: UnicodeDecodeError) -> str:
    with path.open("rb") as handle:
        compressed = handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    if compressed:
        return "is gzip-compressed, not text; name it *.gz (e.g. jobs.csv.gz) to read it"
    # The decoder works in chunks, so its offset is not the file's; the byte is still telling.
    return f"is not UTF-8 text (it holds byte {err.object[err.start]:#04x}); a binary file?"


@dataclass
class Row:
    """One data row: values by column name, and the 1-based line it sits on in the file."""

    values: dict[str, str]
    line: int

    def text(self, name: str, *, default: str | None = None) -> str:
        value = self.values.get(name)
        if value is None or value.strip() == "":
            if default is not None:
                return default
            raise RowError(name, "is empty")
        return value.strip()

    def number(self, name: str, *, default: float | None = None) -> float:
        raw = self.values.get(name)
        if raw is None or raw.strip() == "":
            if default is not None:
                return default
            raise RowError(name, "is empty")
        try:
            value = float(raw)
        except ValueError:
            raise RowError(name, "is not a number", raw.strip()) from None
        if math.isnan(value):
            raise RowError(name, "is NaN")
        if math.isinf(value):
            # ``inf`` or an overflow such as ``1e400``: as a duration the job would never end,
            # as a time it would never arrive, so no trace field may hold one.
            raise RowError(name, "is not a finite number", raw.strip())
        return value

    def integer(self, name: str, *, default: int | None = None) -> int:
        value = self.number(name, default=None if default is None else float(default))
        if not math.isfinite(value) or value != int(value):
            raise RowError(name, "is not a whole number", self.values.get(name, "").strip())
        if abs(value) > MAX_WHOLE:
            # read as a float, so not exact beyond this; nor would it fit the int64 arrays
            raise RowError(name, f"is beyond {MAX_WHOLE}", self.values.get(name, "").strip())
        return int(value)

    def optional_number(self, name: str) -> float | None:
        raw = self.values.get(name)
        if raw is None or raw.strip() == "":
            return None
        return self.number(name)


class RowReader:
    """CSV/TSV rows of one file, checked against required columns."""

    def __init__(
        self,
        path: Path,
        required: tuple[str, ...],
        *,
        delimiter: str = ",",
        fieldnames: tuple[str, ...] | None = None,
    ):
        self.path = path
        self.required = required
        self.delimiter = delimiter
        self.fieldnames = fieldnames

    def __iter__(self) -> Iterator[Row]:
        with open_text(self.path) as handle:
            reader = csv.reader(handle, delimiter=self.delimiter)
            rows = iter(reader)
            with text_errors(self.path, lambda: reader.line_num or None):
                header = list(self.fieldnames) if self.fieldnames else self._header(rows)
                first_line = 1 if self.fieldnames else 2
                offset = -1
                while True:
                    cells = next(rows, None)
                    if cells is None:
                        break
                    offset += 1
                    line = first_line + offset
                    if not cells or all(c.strip() == "" for c in cells):
                        continue
                    if len(cells) != len(header):
                        yield Row({"__width__": str(len(cells))}, line)
                        continue
                    yield Row(dict(zip(header, cells, strict=True)), line)

    def _header(self, reader: Iterator[list[str]]) -> list[str]:
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise TraceError(str(self.path), "file is empty, expected a header row") from None
        missing = [c for c in self.required if c not in header]
        if missing:
            raise TraceError(
                str(self.path),
                f"missing column(s) {missing}; found {header}",
                line=1,
            )
        return header


@dataclass
class JobCollector:
    """Builds the job list of one workload under the shared bad-row policy."""

    strict: bool = False
    jobs: list[Job] = field(default_factory=list)
    skipped: SkipSummary = field(default_factory=SkipSummary)
    _names: set[str] = field(default_factory=set)

    def add_rows(self, reader: RowReader, make: Callable[[Row, str], Job | None]) -> None:
        """``make(row, where)`` returns a Job, or None for a row that is not a job (never a
        silent drop: it must call :meth:`skip` itself)."""
        path = str(reader.path)
        for row in reader:
            where = f"{reader.path.name}:{row.line}"
            if "__width__" in row.values:
                self._bad(
                    path, row.line, None, f"has {row.values['__width__']} cells, header differs"
                )
                continue
            try:
                job = make(row, where)
            except RowError as err:
                self._bad(path, row.line, err.field, str(err), err.message)
                continue
            if job is not None:
                self.add(job, path, row.line)

    def add(self, job: Job, path: str, line: int | None) -> None:
        problem = job.check()
        if problem is None and job.name in self._names:
            problem = "job name repeats"
        if problem is not None:
            self._bad(path, line, None, problem)
            return
        self._names.add(job.name)
        self.jobs.append(job)

    def skip(self, reason: str, where: str) -> None:
        """Record a row that is well formed but deliberately not simulated."""
        self.skipped.add(reason, where)

    def _bad(
        self,
        path: str,
        line: int | None,
        field_name: str | None,
        message: str,
        reason: str | None = None,
    ) -> None:
        if self.strict:
            raise TraceError(path, message, line=line, field=field_name)
        reason = reason or message
        if field_name:
            reason = f"field {field_name!r} {reason}"
        self.skipped.add(reason, f"{Path(path).name}:{line}")
