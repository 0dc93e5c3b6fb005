"""Landing files to bronze rows: read any supported format, keep every value as received.

Bronze stores each business column as text, exactly as it arrived, plus lineage columns. Typing
happens in silver, where a value that does not parse is quarantined rather than lost; keeping
bronze untyped also lets files of every format and every schema version land in one table.

One bad file never costs the good ones, and one broken line never costs its file: a record that
cannot be read becomes a rejected row naming the file and line, an unreadable file becomes one
rejected row and moves to the landing quarantine. Every landed record is either read or rejected.

The landing root is a local folder or an S3 prefix: every function takes the pyarrow filesystem
holding it (the local one by default) and paths as that filesystem names them (``bucket/key`` on
S3), so one code path reads, lists and quarantines in both.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import PurePath, PurePosixPath
from typing import IO, NoReturn

import polars as pl
from pyarrow.fs import FileSelector, FileSystem, FileType, LocalFileSystem

from medallion.sources import FORMATS

LINEAGE_COLUMNS = (
    "_source_file",
    "_source_format",
    "_row_number",
    "_ingested_at",
    "_run_id",
    "_error",
    "_raw",
)
REJECTED_SCHEMA = pl.Schema({"_row_number": pl.Int64(), "_error": pl.String(), "_raw": pl.String()})
"""A record that could not be read: its index in the file (null for the whole file), why, and
its text as received (null for the whole file)."""

DELIVERED_MARKER = "_SUCCESS"
"""Written by the producer into a day folder once the day is complete, even when it had no rows."""

LOCAL = LocalFileSystem()
"""The default filesystem: a landing root that is a local folder."""

FsPath = str | PurePath
"""A landing root or a file under it, as its filesystem names it (a local ``Path`` too)."""

QUARANTINE_FOLDER = "_quarantine"
"""Under the landing root: unreadable files as ``<table>/<day>/<name>``, each with its error in
``<name>.error.json``."""

_READERS: dict[str, Callable[[IO[bytes]], pl.DataFrame]] = {
    "csv": lambda source: pl.read_csv(source, infer_schema=False),
    "parquet": pl.read_parquet,
    "jsonl": lambda source: pl.read_ndjson(source, infer_schema_length=None),
    "avro": pl.read_avro,
}
# Corrupt files make polars panic now and then rather than raise one of its errors.
_READ_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException)


@dataclass(frozen=True)
class LandingFile:
    """One landing file as read: its readable records and the ones it had to reject."""

    path: PurePosixPath
    """Where the file landed, as its filesystem names it: a local path, or ``bucket/key`` on S3.
    ``relative_path`` turns it into the file's name under the landing root, its lineage."""
    format: str
    schema: pl.Schema
    """The file's own schema, before bronze turns every column into text; empty if unreadable."""
    frame: pl.DataFrame
    """The records that could be read."""
    row_numbers: pl.Series
    """Each ``frame`` row's record index in the file: a rejected record leaves a gap."""
    rejected: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REJECTED_SCHEMA))
    """The records that could not be read, as ``REJECTED_SCHEMA``."""

    @property
    def error(self) -> str | None:
        """Why the file as a whole could not be read; None when it could."""
        if self.rejected["_row_number"].has_nulls():
            return self.rejected["_error"][0]
        return None

    @property
    def unreadable(self) -> bool:
        return self.error is not None


class _Unreadable(Exception):
    """The file as a whole cannot be read; the message names it."""


@dataclass
class _Records:
    """A line format split into records: the readable ones as bytes, the others rejected."""

    head: bytes = b""
    good: list[bytes] = field(default_factory=list)
    row_numbers: list[int] = field(default_factory=list)
    rejected: list[dict[str, object]] = field(default_factory=list)

    def accept(self, row_number: int, raw: bytes) -> None:
        self.good.append(raw)
        self.row_numbers.append(row_number)

    def reject(self, row_number: int, error: str, raw: str) -> None:
        self.rejected.append({"_row_number": row_number, "_error": error, "_raw": raw})


def _day_folder(root: FsPath, table: str, day: date, *, quarantine: bool = False) -> PurePosixPath:
    under = (QUARANTINE_FOLDER,) if quarantine else ()
    return PurePosixPath(root, *under, table, day.isoformat())


def _data_files(folder: PurePosixPath, filesystem: FileSystem) -> list[PurePosixPath]:
    found = filesystem.get_file_info(FileSelector(str(folder), allow_not_found=True))
    return sorted(
        PurePosixPath(f.path) for f in found if f.type == FileType.File and f.extension in FORMATS
    )


def relative_path(landing_root: FsPath, path: FsPath) -> str:
    """``path`` under the landing root, e.g. ``transactions/2024-03-01/part-0.csv``: the name a
    file keeps in bronze lineage and in the quarantine, wherever the root lies."""
    return PurePosixPath(path).relative_to(PurePosixPath(landing_root)).as_posix()


def landing_files(
    landing_root: FsPath, table: str, day: date, filesystem: FileSystem = LOCAL
) -> list[PurePosixPath]:
    """Files waiting in the inbox for ``table`` on ``day``, in a stable order."""
    return _data_files(_day_folder(landing_root, table, day), filesystem)


def read_landing_file(path: FsPath, filesystem: FileSystem = LOCAL) -> LandingFile:
    """The file's readable records and its rejected ones; never raises for bad content.

    The file is read whole into memory, so local and S3 files take the same readers. The polars
    reader runs first; only if it fails are csv and jsonl split line by line, so a broken line is
    rejected on its own and the other lines are read by polars as usual.
    """
    path = PurePosixPath(path)
    fmt = path.suffix.lstrip(".")
    if fmt not in _READERS:
        raise ValueError(f"{path}: unsupported landing format {fmt!r}; expected one of {FORMATS}")
    with filesystem.open_input_stream(str(path)) as stream:
        content = stream.read()
    try:
        return _read(path, fmt, content)
    except _Unreadable as unreadable:
        return _unreadable_file(path, fmt, str(unreadable))


def _read(path: PurePosixPath, fmt: str, content: bytes) -> LandingFile:
    if not content:
        raise _Unreadable(f"{path.name}: empty file: 0 bytes")
    try:
        frame = _READERS[fmt](io.BytesIO(content))
    except _READ_ERRORS as error:
        if fmt not in _SPLITTERS:
            raise _Unreadable(_reader_error(path, fmt, error)) from error
        return _read_lines(path, fmt, content)
    row_numbers = pl.int_range(frame.height, dtype=pl.Int64, eager=True)
    return LandingFile(path, fmt, frame.schema, frame, row_numbers)


def _read_lines(path: PurePosixPath, fmt: str, content: bytes) -> LandingFile:
    """Reject the broken records of a line format, then read the rest with polars."""
    records = _SPLITTERS[fmt](path.name, io.BytesIO(content).readlines())
    frame = pl.DataFrame()
    if records.head or records.good:
        try:
            frame = _READERS[fmt](io.BytesIO(records.head + b"".join(records.good)))
        except _READ_ERRORS as error:
            raise _Unreadable(_reader_error(path, fmt, error)) from error
    if frame.height != len(records.good):
        raise _Unreadable(
            f"{path.name}: polars read {frame.height} records where {len(records.good)} were "
            "expected; the file's records cannot be told apart"
        )
    return LandingFile(
        path,
        fmt,
        frame.schema,
        frame,
        pl.Series("_row_number", records.row_numbers, dtype=pl.Int64),
        pl.DataFrame(records.rejected, schema=REJECTED_SCHEMA),
    )


def _reader_error(path: PurePosixPath, fmt: str, error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    reason = lines[0] if lines else type(error).__name__
    return f"{path.name}: unreadable {fmt}: {reason}"


def _decode(line: bytes) -> tuple[str, str | None]:
    """The line as text, and what is wrong with its bytes if they are not UTF-8."""
    try:
        return line.decode(), None
    except UnicodeDecodeError as error:
        offset = error.start
        problem = f"invalid UTF-8 byte 0x{line[offset]:02x} at byte offset {offset} of the line"
        return line.decode(errors="replace"), problem


def _split_jsonl(name: str, lines: list[bytes]) -> _Records:
    """Each non-blank line is a record; one that is not a JSON object is rejected."""
    records = _Records()
    row_number = 0
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        text, problem = _decode(line.rstrip(b"\r\n"))
        problem = problem or _json_problem(text)
        if problem:
            records.reject(row_number, f"{name} line {line_number}: {problem}", text)
        else:
            records.accept(row_number, line)
        row_number += 1
    return records


def _json_problem(text: str) -> str | None:
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        return f"invalid JSON: {error.msg} at column {error.pos + 1}"
    except ValueError as error:
        return f"invalid JSON: {error}"
    return None if isinstance(value, dict) else "not a JSON object"


def _reject_constant(constant: str) -> NoReturn:
    """Python's json accepts NaN and Infinity, polars does not: neither is JSON."""
    raise ValueError(f"{constant} is not a JSON value")


def _split_csv(name: str, lines: list[bytes]) -> _Records:
    """Records as Python's csv module sees them; a row whose field count differs from the
    header's, or that is not UTF-8, is rejected. A record may span lines inside quotes."""
    decoded = [_decode(line) for line in lines]
    reader = csv.reader((text for text, _ in decoded), strict=True)
    records = _Records()
    header: list[str] | None = None
    row_number = start = 0
    while True:
        try:
            row, problem = next(reader), None
        except StopIteration:
            break
        except csv.Error as error:
            row, problem = None, f"malformed CSV: {error}"
        span = range(start, reader.line_num)
        start = reader.line_num
        if row == []:  # a blank line is not a record
            continue
        problem = next((decoded[i][1] for i in span if decoded[i][1]), None) or problem
        where = f"{name} line {span[0] + 1}"
        if header is None:
            if problem or row is None:
                raise _Unreadable(f"{where}: unreadable header: {problem}")
            header, records.head = row, b"".join(lines[i] for i in span)
            continue
        if not problem and row is not None and len(row) != len(header):
            problem = f"{len(row)} fields, the header has {len(header)}"
        if problem:
            raw = "".join(decoded[i][0] for i in span).rstrip("\r\n")
            records.reject(row_number, f"{where}: {problem}", raw)
        else:
            records.accept(row_number, b"".join(lines[i] for i in span))
        row_number += 1
    if header is None:
        raise _Unreadable(f"{name}: no header")
    return records


_SPLITTERS: dict[str, Callable[[str, list[bytes]], _Records]] = {
    "csv": _split_csv,
    "jsonl": _split_jsonl,
}


def _unreadable_file(path: PurePosixPath, fmt: str, error: str) -> LandingFile:
    rejected = pl.DataFrame({"_row_number": [None], "_error": [error], "_raw": [None]})
    return LandingFile(
        path,
        fmt,
        pl.Schema(),
        pl.DataFrame(),
        pl.Series("_row_number", [], dtype=pl.Int64),
        rejected.cast(REJECTED_SCHEMA),
    )


def to_bronze(
    landing: LandingFile, *, source_file: str, ingested_at: datetime, run_id: str
) -> pl.DataFrame:
    """Every column as text, in the file's order, and the rejected records with business columns
    null and ``_error``/``_raw`` set; each row says where and when it came from."""
    as_text = [
        pl.col(name).dt.strftime("%Y-%m-%dT%H:%M:%S%.6f")
        if dtype.is_temporal()
        else pl.col(name).cast(pl.String)
        for name, dtype in landing.schema.items()
    ]

    def lineage(row_number: pl.Expr, error: pl.Expr, raw: pl.Expr) -> list[pl.Expr]:
        return [
            pl.lit(source_file).alias("_source_file"),
            pl.lit(landing.format).alias("_source_format"),
            row_number.alias("_row_number"),
            pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")).alias("_ingested_at"),
            pl.lit(run_id).alias("_run_id"),
            error.alias("_error"),
            raw.alias("_raw"),
        ]

    nothing = pl.lit(None, dtype=pl.String)
    rows = landing.frame.select(*as_text, *lineage(pl.lit(landing.row_numbers), nothing, nothing))
    if landing.rejected.is_empty():
        return rows
    rejected = landing.rejected.select(lineage(*(pl.col(c) for c in REJECTED_SCHEMA)))
    return pl.concat([rows, rejected], how="diagonal").sort("_row_number")


def _error_record(quarantined: PurePosixPath) -> str:
    return str(quarantined.with_name(f"{quarantined.name}.error.json"))


def quarantine_file(
    landing_root: FsPath, path: FsPath, error: str, filesystem: FileSystem = LOCAL
) -> PurePosixPath:
    """Move an unreadable file out of the inbox, with the reader's error beside it.

    The file is kept for whoever fixes the feed, and ``quarantined_files`` still accounts for it
    when its day is ingested again. Returns where the file now lies.
    """
    relative = relative_path(landing_root, path)
    target = PurePosixPath(landing_root, QUARANTINE_FOLDER, relative)
    filesystem.create_dir(str(target.parent), recursive=True)
    record = {
        "file": relative,
        "error": error,
        "quarantined_at": datetime.now(UTC).isoformat(),
    }
    # The error record first: a quarantined file is never without one.
    with filesystem.open_output_stream(_error_record(target)) as out:
        out.write((json.dumps(record, indent=2) + "\n").encode())
    filesystem.move(str(path), str(target))
    return target


def quarantined_files(
    landing_root: FsPath, table: str, day: date, filesystem: FileSystem = LOCAL
) -> list[LandingFile]:
    """The day's quarantined files as unreadable LandingFiles, so a re-run accounts for them.

    Each ``path`` is where the file landed, so its bronze lineage is the same on every run. A file
    re-delivered to the inbox under the same name supersedes its quarantined copy. Call this
    before quarantining the unreadable files of the current run, which the run accounts for itself.
    """
    inbox = {p.name for p in landing_files(landing_root, table, day, filesystem)}
    files = []
    for path in _data_files(_day_folder(landing_root, table, day, quarantine=True), filesystem):
        if path.name in inbox:
            continue
        with filesystem.open_input_stream(_error_record(path)) as stream:
            record = json.loads(stream.read())
        landed = PurePosixPath(landing_root, record["file"])
        files.append(_unreadable_file(landed, path.suffix.lstrip("."), record["error"]))
    return files


def landing_delivered(
    landing_root: FsPath, table: str, day: date, filesystem: FileSystem = LOCAL
) -> bool:
    """Whether ``table`` has arrived for ``day``: a day without files counts only once the
    producer has written the delivery marker, so a late feed is not mistaken for an empty day."""
    folder = _day_folder(landing_root, table, day)
    marker = filesystem.get_file_info(str(folder / DELIVERED_MARKER))
    return (
        marker.type == FileType.File
        or bool(_data_files(folder, filesystem))
        or bool(_data_files(_day_folder(landing_root, table, day, quarantine=True), filesystem))
    )
