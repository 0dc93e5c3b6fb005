"""What a derived table declaration is made of: the tables it reads, its transform, its checks.

A gold table joins silver tables into ML-ready rows. Its declaration (one file in
``assets/gold/``) names each input and which of its days one output day reads, a transform over
lazy frames, what each output column means and where it comes from, and the checks that must
pass before a day is published. The Dagster factory turns the input days into partition
mappings; nothing here knows Dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl

from medallion.quality import CheckOutcome


@dataclass(frozen=True)
class Days:
    """Which days of an input one output day ``D`` reads: ``D - before`` .. ``D + after``.

    ``before=None`` reads the whole history up to ``D + after`` (every profile known by then).
    """

    before: int | None = 0
    after: int = 0


SAME_DAY = Days()
HISTORY = Days(before=None)


def following(days: int) -> Days:
    """``D`` and the ``days`` after it: labels that arrive late."""
    return Days(before=0, after=days)


@dataclass(frozen=True)
class Input:
    table: str
    """The input's table path, e.g. ``silver/transactions`` (the asset key joined by ``/``)."""
    days: Days = SAME_DAY


@dataclass(frozen=True)
class DerivedColumn:
    description: str
    sources: tuple[str, ...]
    """The ``input.column`` pairs it is computed from, e.g. ``("transactions.amount",)``."""


CheckFunction = Callable[[pl.DataFrame, Mapping[str, pl.LazyFrame]], CheckOutcome]
"""A check of the output day against its inputs (lazy, as read for the day)."""


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    evaluate: CheckFunction
    blocking: bool = False
    """A failing blocking check keeps the day from being published."""


@dataclass(frozen=True)
class DerivedTable:
    """A table computed from other tables of the lake, one daily partition at a time."""

    layer: str
    name: str
    description: str
    inputs: Mapping[str, Input]
    transform: Callable[..., pl.DataFrame]
    """Called with one lazy frame per input, by input name; returns the output day's rows."""
    columns: Mapping[str, DerivedColumn]
    checks: tuple[Check, ...] = ()
    owner: str = "team:data-platform"
    metadata: Callable[[pl.DataFrame], dict[str, object]] | None = field(default=None)
    """Extra numbers a person wants to see per day (e.g. how many labels), from the output."""

    def __post_init__(self) -> None:
        for column, derived in self.columns.items():
            for source in derived.sources:
                name, _, _ = source.partition(".")
                if name not in self.inputs:
                    raise ValueError(
                        f"{self.table}: column {column!r} comes from {source!r}, "
                        f"but {name!r} is not an input ({sorted(self.inputs)})"
                    )
        names = [c.name for c in self.checks]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.table}: a check is declared twice: {names}")

    @property
    def table(self) -> str:
        return f"{self.layer}/{self.name}"


def as_of(
    sorted_events: pl.LazyFrame,
    versions: pl.LazyFrame,
    *,
    by: str,
    event_time: str,
    valid_from: str,
) -> pl.LazyFrame:
    """Attach to each event, already sorted by ``event_time``, the latest version of its entity
    with ``valid_from <= event_time``; an event before the entity's first version gets nulls."""
    return sorted_events.join_asof(
        versions.sort(valid_from),
        left_on=event_time,
        right_on=valid_from,
        by=by,
        strategy="backward",
        check_sortedness=False,
    )
