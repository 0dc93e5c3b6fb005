"""Training sets as declarations: which rows, which features, which labels, which split.

A ``TrainingSet`` (one file in ``assets/training/``) names a source table of labelled events, the
columns kept from it, the stored features it joins ("view:feature" references), the request-time
features computed on top, its label and when each label became known, how long labels take to
arrive, and a temporal split. ``build_training_set`` turns it into one frame; the Dagster factory
(``factories.training``) only feeds it the tables and writes the result. Nothing here knows
Dagster or the declarations in ``assets/``.

What the frame promises, row by row:

- **The features the service would have seen.** Each event is joined with the feature rows dated
  strictly before it: when a transaction arrives it is not in the online store yet, but the
  offline rows of a rolling view (``customer_activity``) include the transaction itself. Joining
  ``<=`` would train on a value the service can never reproduce.
- **Labels known by the cutoff.** The label is true only where ``label_known_at <= cutoff``;
  events younger than ``cutoff - label_delay`` are left out, since most of their labels have not
  arrived yet and they would read as negatives.
- **A temporal split with gaps.** Rows in event time order are cut into ``train``,
  ``validation`` and ``test`` (the ``split`` column ``training.data.split_by`` reads), the last
  two at their declared share of the rows; the ``gap`` before each later split is dropped from
  the end of the one before, so that no split's labels overlap the next split's period. Rows at
  one event time always share a split.
- **Determinism.** The same inputs and cutoff give the same frame, row order included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from feature_store.offline import get_historical_features
from feature_store.online import OnlineStore
from feature_store.serving import get_online_features, with_request_features
from feature_store.views import FeatureView, RequestFeature, group_references, parse_reference

SPLIT = "split"
"""The column naming each row's split."""
SPLITS = ("train", "validation", "test")
"""Its values, in time order (the same as ``training.data.SPLITS``)."""


@dataclass(frozen=True)
class Split:
    """Fractions of the rows, in event time order, and the time dropped after each cut."""

    train: float = 0.7
    validation: float = 0.15
    test: float = 0.15
    gap: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        fractions = (self.train, self.validation, self.test)
        if any(f < 0 for f in fractions) or self.train <= 0:
            raise ValueError(f"split fractions must be >= 0 (train > 0): {fractions}")
        if not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
            raise ValueError(f"split fractions must sum to 1: {fractions}")
        if self.gap < timedelta(0):
            raise ValueError(f"split gap must not be negative: {self.gap}")


@dataclass(frozen=True)
class TrainingSet:
    """One training frame, declared: the Delta table ``training/<name>``."""

    name: str
    source: str
    """Table path of the labelled events, e.g. ``gold/labeled_transactions``."""
    columns: tuple[str, ...]
    """Source columns kept as they are: identifiers, the event time, raw model inputs."""
    features: tuple[str, ...]
    """Stored features joined as of each event, as "view:feature" references."""
    label: str
    label_known_at: str
    """When each row's label became known; a label known after the cutoff reads as false."""
    label_delay: timedelta
    """How long labels take to arrive: events after ``cutoff - label_delay`` are left out."""
    owner: str
    description: str
    split: Split = Split()
    event_time: str = "event_time"
    request_features: tuple[str, ...] = ()
    """Declared request-time features, computed with the expressions serving uses."""

    def __post_init__(self) -> None:
        def fail(problem: str) -> None:
            raise ValueError(f"training set {self.name!r}: {problem}")

        if not self.name.isidentifier():
            fail("its name must be an identifier (it names the table training/<name>)")
        if self.source.count("/") != 1:
            fail(f"source {self.source!r} is not a table path like 'gold/labeled_transactions'")
        if not self.columns:
            fail("keeps no source columns")
        if self.event_time not in self.columns:
            fail(f"the event time {self.event_time!r} must be one of the kept columns")
        output = self.output_columns
        if clash := sorted({n for n in output if output.count(n) > 1}):
            fail(f"column names {clash} appear twice (columns, features, label, {SPLIT!r})")
        if self.label_known_at in (self.label, SPLIT):
            fail(f"label_known_at {self.label_known_at!r} must be its own column")
        if self.label_delay < timedelta(0):
            fail(f"label_delay must not be negative: {self.label_delay}")

    @property
    def table(self) -> str:
        return f"training/{self.name}"

    @property
    def output_columns(self) -> tuple[str, ...]:
        """The columns of ``training/<name>``, in order."""
        features = [parse_reference(r)[1] for r in self.features]
        return (*self.columns, *features, *self.request_features, self.label, SPLIT)


def feature_references(
    spec: TrainingSet, request_features: Mapping[str, RequestFeature]
) -> tuple[str, ...]:
    """Every stored feature the set reads: its own and those its request features need."""
    read = list(spec.features)
    for name in spec.request_features:
        read += [r for r in request_features[name].inputs if r not in read]
    return tuple(read)


def entity_columns(
    spec: TrainingSet,
    views: Mapping[str, FeatureView],
    request_features: Mapping[str, RequestFeature],
) -> list[str]:
    """The join keys of the views the set's features come from: what a request must carry."""
    read = group_references(feature_references(spec, request_features), views)
    return list(dict.fromkeys(views[name].entity.join_key for name in read))


def offline_features(
    spec: TrainingSet,
    events: pl.LazyFrame | pl.DataFrame,
    views: Mapping[str, FeatureView],
    scan: Callable[[str], pl.LazyFrame],
    request_features: Mapping[str, RequestFeature],
) -> pl.DataFrame:
    """``events`` with every feature of the set, joined strictly before each event's time.

    The training set, batch scoring and the check of a served score all go through here or
    ``online_features``, so a row gets the same values whichever path computes it.
    """
    frame = get_historical_features(
        events.lazy(),
        feature_references(spec, request_features),
        views=views,
        scan=scan,
        entity_timestamp=spec.event_time,
        strictly_before=True,
    )
    return with_request_features(frame, _declared(spec, request_features))


def online_features(
    spec: TrainingSet,
    store: OnlineStore,
    requests: pl.DataFrame,
    views: Mapping[str, FeatureView],
    request_features: Mapping[str, RequestFeature],
) -> pl.DataFrame:
    """``requests`` with every feature of the set, read from the online store as each request's
    event time would have seen them in the offline store: strictly before it, within ttl."""
    return get_online_features(
        store,
        requests,
        feature_references(spec, request_features),
        views=views,
        as_of=spec.event_time,
        request_features=_declared(spec, request_features),
        strictly_before=True,
    )


def build_training_set(
    spec: TrainingSet,
    source: pl.LazyFrame,
    views: Mapping[str, FeatureView],
    scan: Callable[[str], pl.LazyFrame],
    cutoff: datetime,
    request_features: Mapping[str, RequestFeature] | Sequence[RequestFeature] = (),
) -> pl.DataFrame:
    """The training frame of ``spec`` as of ``cutoff`` (naive UTC), see the module docstring.

    ``source`` is the labelled event table; ``scan`` reads a feature view's offline table
    (``features/<view>``); ``request_features`` the declared ones (by name, or a sequence).
    Columns: the kept columns, the features, the request features, the label, ``split``.
    """
    if cutoff.tzinfo is not None:
        raise ValueError(f"cutoff {cutoff} has a time zone; the lake keeps naive UTC times")
    declared = (
        dict(request_features)
        if isinstance(request_features, Mapping)
        else {f.name: f for f in request_features}
    )
    if missing := [n for n in spec.request_features if n not in declared]:
        raise KeyError(f"training set {spec.name!r}: undeclared request features {missing}")
    read = list(dict.fromkeys([*spec.columns, *entity_columns(spec, views, declared)]))
    at = pl.col(spec.event_time)
    known = pl.col(spec.label) & (pl.col(spec.label_known_at) <= cutoff)
    events = (
        source.filter(at < cutoff - spec.label_delay)
        .select(*read, known.fill_null(False).alias(spec.label))
        .sort([spec.event_time, *spec.columns], nulls_last=True, maintain_order=True)
    )
    frame = offline_features(spec, events, views, scan, declared)
    return assign_splits(
        frame.select(*feature_columns(spec), spec.label), spec.event_time, spec.split
    )


def feature_columns(spec: TrainingSet) -> list[str]:
    """The kept columns, the features and the request features, in the table's order."""
    names = [parse_reference(r)[1] for r in spec.features]
    return [*spec.columns, *names, *spec.request_features]


def _declared(
    spec: TrainingSet, request_features: Mapping[str, RequestFeature]
) -> list[RequestFeature]:
    if missing := [n for n in spec.request_features if n not in request_features]:
        raise KeyError(f"training set {spec.name!r}: undeclared request features {missing}")
    return [request_features[n] for n in spec.request_features]


def assign_splits(frame: pl.DataFrame, event_time: str, split: Split) -> pl.DataFrame:
    """``frame``, sorted by ``event_time``, with the ``split`` column; gap rows dropped.

    Cut from the end, so the splits that judge a model keep their declared share of the rows:
    ``test`` is the last ``split.test`` of them, ``validation`` the ``split.validation`` before
    that, and each gap comes out of the end of the split before it (``train`` absorbs them).
    Rows at one time always share a split: a cut inside them moves them all to the later one.
    """
    frame = frame.sort(event_time, maintain_order=True)
    times = frame[event_time]
    at = pl.col(event_time)

    def start_of(rows: int, before: datetime | None) -> datetime | None:
        """The time of the first of the last ``rows`` rows dated before ``before``."""
        earlier = times if before is None else times.filter(times < before)
        return earlier[earlier.len() - rows] if 0 < rows <= earlier.len() else None

    def since(bound: datetime | None) -> pl.Expr:
        return pl.lit(False) if bound is None else at >= bound

    def until(bound: datetime | None) -> pl.Expr:
        return pl.lit(True) if bound is None else at < bound - split.gap

    test = start_of(round(frame.height * split.test), None)
    validation = start_of(
        round(frame.height * split.validation),
        None if test is None else test - split.gap,
    )
    label = (
        pl.when(since(test))
        .then(pl.lit(SPLITS[2]))
        .when(since(validation) & until(test))
        .then(pl.lit(SPLITS[1]))
        .when(until(validation) & until(test))
        .then(pl.lit(SPLITS[0]))
    )
    return frame.with_columns(label.alias(SPLIT)).filter(pl.col(SPLIT).is_not_null())
