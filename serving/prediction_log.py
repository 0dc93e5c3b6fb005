"""Every prediction the service makes, written to a Delta table in micro-batches.

One Delta commit per prediction would bury the table in tiny files and put a commit on every
request's path, so rows are buffered and written every ``flush_rows`` rows or ``flush_seconds``
seconds, whichever comes first. The price is that a crash loses what was buffered; the bound on
that loss is logged when the log opens, so it is a known number, not a surprise.

In the service the writer is ``functools.partial(lakehouse.append, "monitoring/predictions")``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from types import TracebackType

import polars as pl


class PredictionLog:
    """A thread-safe buffer of prediction rows in front of ``write``.

    Writes happen on the log's own thread: every ``flush_seconds``, and at once when an append
    fills the buffer to ``flush_rows``, so no request waits on a Delta commit (a local commit
    takes tens of milliseconds, far beyond a 10 ms p99). A crash loses the rows appended since
    the last finished write: about ``flush_rows``, plus what arrives during one write.
    A failed write keeps its rows, in order, for the next flush; until one succeeds only the
    timed flushes retry, so a store that is down is not hammered.
    """

    def __init__(
        self,
        write: Callable[[pl.DataFrame], object],
        schema: Mapping[str, pl.DataType | type[pl.DataType]],
        flush_rows: int = 256,
        flush_seconds: float = 2.0,
        logger: logging.Logger | None = None,
    ) -> None:
        if flush_rows < 1:
            raise ValueError(f"flush_rows {flush_rows} must be at least 1")
        if flush_seconds <= 0:
            raise ValueError(f"flush_seconds {flush_seconds} must be positive")
        self._write = write
        self._schema = pl.Schema(schema)
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._logger = logger or logging.getLogger(__name__)
        self._buffer: list[pl.DataFrame] = []
        self._buffered = 0
        self._in_flight = 0
        self._failing = False
        self._closed = False
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._logger.info(
            "prediction log: a crash loses the rows buffered since the last flush, "
            "at most %d rows or %g s of predictions",
            flush_rows,
            flush_seconds,
        )
        self._timer = threading.Thread(
            target=self._flush_on_time, name="prediction-log", daemon=True
        )
        self._timer.start()

    def append(self, frame: pl.DataFrame) -> None:
        """Buffer ``frame``, which must have exactly the schema's columns and dtypes: a frame
        that does not fit raises here, naming the field, instead of failing a whole batch at
        write time."""
        if frame.is_empty():
            return
        self._check(frame)
        with self._lock:
            if self._closed:
                raise RuntimeError("prediction log is closed")
            self._buffer.append(frame)
            self._buffered += frame.height
            full = self._buffered >= self._flush_rows and not self._failing
        if full:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Rows appended and not written yet (buffered or being written): what a crash now
        would lose."""
        return self._buffered + self._in_flight

    def flush(self) -> int:
        """Write everything buffered; the rows written (0 if the write failed, keeping them)."""
        with self._writing:
            with self._lock:
                batch, self._buffer = self._buffer, []
                self._in_flight, self._buffered = self._buffered, 0
            if not batch:
                return 0
            frame = pl.concat(batch, how="vertical", rechunk=True)
            try:
                self._write(frame)
            except Exception:
                with self._lock:
                    self._buffer[:0] = batch
                    self._buffered += frame.height
                    self._in_flight = 0
                    self._failing = True
                    buffered = self._buffered
                self._logger.exception(
                    "prediction log: writing %d rows failed; %d rows stay buffered for a retry",
                    frame.height,
                    buffered,
                )
                return 0
            with self._lock:
                self._failing = False
                self._in_flight = 0
            self._logger.debug("prediction log: wrote %d rows", frame.height)
            return frame.height

    def close(self) -> None:
        """Stop the timed flushes and write what is left; closing again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._wake.set()
        self._timer.join()
        self.flush()
        if self._buffered:
            self._logger.error(
                "prediction log: closed with %d rows it could not write; they are lost",
                self._buffered,
            )

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _flush_on_time(self) -> None:
        while True:
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            if self._buffered:
                self.flush()

    def _check(self, frame: pl.DataFrame) -> None:
        if frame.schema == self._schema:
            return
        missing = sorted(self._schema.keys() - set(frame.columns))
        unexpected = sorted(set(frame.columns) - self._schema.keys())
        if missing or unexpected:
            raise ValueError(
                f"prediction rows have missing fields {missing} and unexpected fields {unexpected}"
            )
        for name, dtype in self._schema.items():
            if frame.schema[name] != dtype:
                raise TypeError(
                    f"prediction field {name!r} must hold {dtype}, not {frame.schema[name]}"
                )
        raise ValueError(f"prediction fields must come in the order {list(self._schema)}")
