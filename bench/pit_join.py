"""Point-in-time join: our offline store against Feast's file offline store, same data and ttl.

    python bench/pit_join.py [--feature-rows N --entity-rows M --entities K]

It writes seeded synthetic data once (not timed): a feature table of N rows for K customers
(``customer_id``, ``event_timestamp``, ``created_timestamp``, five numeric features; ~5% of the
rows repeat an event timestamp of their customer with another created timestamp, to exercise the
tie rule) to parquet and to a Delta table, and an entity frame of M rows (~1% unknown customers,
~2% of timestamps before any feature row, the rest spread over the feature rows' span).

  ours   - ``get_historical_features(entity_df, refs, views=..., scan=pl.scan_delta)``, end to
           end from the Delta table (median of --repeats after one warm-up); ``in_memory_seconds``
           is ``point_in_time_join`` alone on the feature rows already in memory;
  anchor - Feast 0.67 ``FeatureStore.get_historical_features(entity_df=pandas_df,
           features=refs).to_df()`` with the file offline store on the parquet file, in the
           separate Feast venv (bench/feast_pit.py), one timed run after a warm-up.

Feast's file store drops entity rows that have feature rows but none in the ttl window; the
check compares values on the rows both return, matched by (customer_id, event_timestamp, row id),
checks that every row Feast dropped is all-null in ours, and checks a sample of ours against a
brute-force reference. It exits 1 if any of that disagrees. Setup of the Feast venv (``make bench``
does it):
    make bench-venv  # .venv-bench with feast[redis]==0.67.0
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feature_store.offline import get_historical_features, point_in_time_join  # noqa: E402
from feature_store.views import Entity, Feature, FeatureView  # noqa: E402

VIEW = "customer_stats"
KEY = "customer_id"
TS = "event_timestamp"
CREATED = "created_timestamp"
ROW = "entity_row"
FLOATS = ["f1", "f2", "f3", "f4"]
INTS = ["f5"]
FEATURES = FLOATS + INTS
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN_DAYS = 90
US = 1_000_000
DAY_US = 86_400 * US
TSTYPE = pl.Datetime("us", "UTC")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def customer_ids(prefix: str, index: np.ndarray) -> pl.Expr:
    return pl.format(prefix + "{}", pl.lit(pl.Series(index)).cast(pl.String).str.zfill(8))


def make_features(rows: int, entities: int, rng: np.random.Generator) -> pl.DataFrame:
    """Rows in arbitrary order; ~5% share (customer, event time) with another row."""
    dups = rows // 20
    base = rows - dups
    key = rng.integers(0, entities, base)
    key[: min(entities, base)] = np.arange(min(entities, base))  # every customer has rows
    event = rng.integers(0, SPAN_DAYS * 86_400, base) * US  # whole seconds
    created = event + rng.integers(0, 3_600, base) * US
    pick = rng.choice(base, dups, replace=False)
    shift = rng.integers(1, 86_400, dups) * rng.choice([-1, 1], dups) * US
    key = np.concatenate([key, key[pick]])
    event = np.concatenate([event, event[pick]])
    created = np.concatenate([created, created[pick] + shift])
    order = rng.permutation(rows)
    start = int(START.timestamp()) * US
    frame = pl.DataFrame(
        {
            TS: pl.Series(event[order] + start).cast(TSTYPE),
            CREATED: pl.Series(created[order] + start).cast(TSTYPE),
            **{f: rng.standard_normal(rows) for f in FLOATS},
            **{f: rng.integers(0, 1_000_000, rows) for f in INTS},
        }
    )
    frame = frame.select(customer_ids("c", key[order]).alias(KEY), pl.all())
    # A tie on (customer, event, created) would have no defined winner; drop the rare few.
    return frame.unique([KEY, TS, CREATED], keep="first", maintain_order=True)


def make_entities(rows: int, entities: int, rng: np.random.Generator) -> pl.DataFrame:
    """Entity rows with unique (customer, timestamp), since Feast collapses duplicates."""
    n = rows + rows // 100 + 10
    known = rng.integers(0, entities, n)
    unknown = rng.random(n) < 0.01
    at = rng.integers(0, SPAN_DAYS * DAY_US, n)  # microseconds
    early = rng.random(n) < 0.02
    at[early] = -rng.integers(1, 5 * DAY_US, int(early.sum()))
    start = int(START.timestamp()) * US
    frame = pl.DataFrame(
        {
            KEY: pl.select(
                pl.when(pl.Series(unknown))
                .then(customer_ids("x", known))
                .otherwise(customer_ids("c", known))
            ).to_series(),
            TS: pl.Series(at + start).cast(TSTYPE),
        }
    )
    frame = frame.unique([KEY, TS], keep="first", maintain_order=True).head(rows)
    assert frame.height == rows, "not enough distinct entity rows"
    return frame.with_row_index(ROW).select(KEY, TS, pl.col(ROW).cast(pl.Int64))


def make_view(ttl: timedelta) -> FeatureView:
    return FeatureView(
        name=VIEW,
        entity=Entity(name="customer", join_key=KEY),
        source=("bench", "customers"),
        transform=lambda source, window: source,
        features=tuple(
            Feature(name=f, dtype=pl.Float64 if f in FLOATS else pl.Int64, description=f)
            for f in FEATURES
        ),
        ttl=ttl,
        owner="bench",
        freshness_sla=timedelta(days=1),
        description="synthetic customer features for the point-in-time join benchmark",
    )


def time_ours(
    entity_df: pl.DataFrame,
    features: pl.DataFrame,
    workdir: Path,
    view: FeatureView,
    repeats: int,
) -> tuple[pl.DataFrame, float, float]:
    refs = [f"{VIEW}:{f}" for f in FEATURES]

    def end_to_end() -> pl.DataFrame:
        return get_historical_features(
            entity_df,
            refs,
            views={VIEW: view},
            scan=lambda table: pl.scan_delta(str(workdir / table)),
        )

    def in_memory() -> pl.DataFrame:
        return point_in_time_join(
            entity_df.lazy(),
            features.lazy(),
            join_key=KEY,
            feature_names=FEATURES,
            ttl=view.ttl,
        ).collect()

    timings: dict[str, list[float]] = {"end_to_end": [], "in_memory": []}
    result = end_to_end()  # warm-up
    in_memory()
    for _ in range(repeats):  # alternate, so background noise hits both alike
        for name, call in (("end_to_end", end_to_end), ("in_memory", in_memory)):
            begin = time.perf_counter()
            call()
            timings[name].append(time.perf_counter() - begin)
    log(f"ours: {json.dumps({k: [round(s, 3) for s in v] for k, v in timings.items()})}")
    return (
        result,
        statistics.median(timings["end_to_end"]),
        statistics.median(timings["in_memory"]),
    )


def proc_rss_mib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _first_to_go() -> None:
    """Make the Feast process the kernel's first choice should memory run out."""
    Path("/proc/self/oom_score_adj").write_text("1000")


def available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def run_feast(
    python: str, workdir: Path, ttl: timedelta, timeout: float, max_rss_mib: int
) -> tuple[pl.DataFrame | None, dict[str, Any]]:
    """Feast in its own venv, killed past ``timeout`` seconds or ``max_rss_mib`` resident."""
    out, timing = workdir / "feast_result.parquet", workdir / "feast_timing.json"
    command = [
        python,
        str(ROOT / "bench" / "feast_pit.py"),
        "--features",
        str(workdir / "features.parquet"),
        "--entities",
        str(workdir / "entities.parquet"),
        "--ttl-seconds",
        str(ttl.total_seconds()),
        "--workdir",
        str(workdir / "feast_repo"),
        "--out",
        str(out),
        "--timing",
        str(timing),
    ]
    begin, peak = time.monotonic(), 0
    process = subprocess.Popen(command, cwd=workdir, preexec_fn=_first_to_go)
    error = None
    while process.poll() is None:
        peak = max(peak, proc_rss_mib(process.pid))
        if time.monotonic() - begin > timeout:
            error = f"killed after {timeout:.0f}s"
        elif peak > max_rss_mib:
            error = f"killed at {peak} MiB resident (limit {max_rss_mib})"
        if error:
            process.kill()
            process.wait()
            break
        time.sleep(0.2)
    if error is None and process.returncode != 0:
        error = f"exited with {process.returncode}"
    if error is not None:
        log(f"feast: {error}")
        return None, {"error": error, "max_rss_mib": peak}
    return pl.read_parquet(out), json.loads(timing.read_text())


def reference(rows: pl.DataFrame, features: pl.DataFrame, ttl: timedelta) -> pl.DataFrame:
    """Brute force for some entity rows: every candidate feature row, filtered, then the last.

    Also returns the winning row's event and created timestamps (``winner_event``/``_created``).
    """
    candidates = (
        rows.select(ROW, KEY, TS)
        .join(features, on=KEY, how="inner", suffix="_feature")
        .filter(
            pl.col(f"{TS}_feature") <= pl.col(TS),
            pl.col(f"{TS}_feature") >= pl.col(TS) - ttl,
        )
        .sort(ROW, f"{TS}_feature", CREATED)
        .group_by(ROW, maintain_order=True)
        .last()
        .select(
            ROW,
            *FEATURES,
            pl.col(f"{TS}_feature").alias("winner_event"),
            pl.col(CREATED).alias("winner_created"),
        )
    )
    return rows.select(ROW, KEY, TS).join(candidates, on=ROW, how="left")


def tie_break_errors(
    rows: pl.DataFrame, anchor: pl.DataFrame, features: pl.DataFrame, ttl: timedelta
) -> int:
    """How many of ``rows`` (where the anchor differs from ours) the anchor got wrong by taking,
    of several feature rows at the winning event timestamp, one created earlier than the latest.

    The anchor's pick is found by its values (random floats, unique in practice)."""
    truth = reference(rows, features, ttl)
    picks = (
        anchor.join(rows.select(ROW), on=ROW, how="semi")
        .select(ROW, KEY, *FLOATS)
        .join(
            features.select(
                KEY, *FLOATS, pl.col(TS).alias("pick_event"), pl.col(CREATED).alias("pick_created")
            ),
            on=[KEY, *FLOATS],
            how="inner",
        )
        .select(ROW, "pick_event", "pick_created")
    )
    return (
        truth.join(picks, on=ROW, how="inner")
        .filter(
            pl.col("pick_event") == pl.col("winner_event"),
            pl.col("pick_created") < pl.col("winner_created"),
        )
        .select(ROW)
        .n_unique()
    )


def differing_rows(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``left`` whose features differ from ``right``'s row of the same row id (rows in
    only one of them are left out); null equals null, NaN counts as null."""
    same = pl.lit(True)
    for f in FEATURES:
        a = pl.col(f).cast(pl.Float64).fill_nan(None)
        b = pl.col(f"{f}_other").cast(pl.Float64).fill_nan(None)
        same = same & a.eq_missing(b)
    both = left.select(ROW, *FEATURES).join(
        right.select(ROW, *(pl.col(f).alias(f"{f}_other") for f in FEATURES)), on=ROW
    )
    return both.filter(~same).select(ROW)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature-rows", type=int, default=10_000_000)
    parser.add_argument("--entity-rows", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--ttl-days", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--feast-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--feast-timeout", type=float, default=1800.0)
    parser.add_argument(
        "--feast-max-rss-mib",
        type=int,
        help="kill Feast above this resident size (default: available memory less 1 GiB)",
    )
    parser.add_argument("--reference-sample", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, help="keep the data here (default: a temp dir)")
    args = parser.parse_args()
    ttl = timedelta(days=args.ttl_days)

    with tempfile.TemporaryDirectory(prefix="pit_join_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        log(f"generating {args.feature_rows} feature rows, {args.entity_rows} entity rows")
        rng = np.random.default_rng(args.seed)
        features = make_features(args.feature_rows, args.entities, rng)
        entity_df = make_entities(args.entity_rows, args.entities, rng)
        view = make_view(ttl)
        features.write_parquet(workdir / "features.parquet")
        entity_df.write_parquet(workdir / "entities.parquet")
        features.write_delta(str(workdir / view.table), mode="overwrite")
        log(f"data written to {workdir}")

        ours, seconds, in_memory = time_ours(entity_df, features, workdir, view, args.repeats)
        log(f"ours: {seconds:.3f}s end to end, {in_memory:.3f}s in memory")

        checks: dict[str, Any] = {}
        assert ours.height == entity_df.height
        checks["order_kept"] = ours.select(ROW).equals(entity_df.select(ROW))
        sample = entity_df.sample(min(args.reference_sample, entity_df.height), seed=args.seed)
        checks["reference_rows"] = sample.height
        checks["reference_differing_rows"] = differing_rows(
            ours, reference(sample, features, ttl)
        ).height
        del features

        limit = args.feast_max_rss_mib or available_mib() - 1024
        feast, anchor = run_feast(args.feast_python, workdir, ttl, args.feast_timeout, limit)

        result: dict[str, Any] = {
            "bench": "pit_join",
            "feature_rows": args.feature_rows,
            "entity_rows": args.entity_rows,
            "entities": args.entities,
            "ttl_days": args.ttl_days,
            "seconds": round(seconds, 4),
            "in_memory_seconds": round(in_memory, 4),
            "anchor": "feast-0.67-file",
            "anchor_seconds": None,
            "ratio": None,
            "ours_null_rows": ours.filter(pl.all_horizontal(pl.col(FEATURES).is_null())).height,
        }
        ok = checks["order_kept"] and checks["reference_differing_rows"] == 0
        if feast is None:
            result.update(anchor_error=anchor["error"], values_equal=None)
            ok = False
        else:
            feast = feast.with_columns(pl.col(TS).cast(TSTYPE), pl.col(KEY).cast(pl.String))
            on = [KEY, TS, ROW]
            matched = ours.join(feast, on=on, how="semi")
            dropped = ours.join(feast, on=on, how="anti")
            aligned = feast.join(ours, on=on, how="semi")
            differing = differing_rows(matched, feast)
            ties = 0
            if differing.height:
                features = pl.read_parquet(workdir / "features.parquet")
                rows = entity_df.join(differing, on=ROW, how="semi")
                ties = tie_break_errors(rows, feast, features, ttl)
            checks["anchor_unmatched_rows"] = feast.height - aligned.height
            checks["anchor_duplicate_rows"] = feast.height - feast.select(ROW).n_unique()
            checks["anchor_dropped_rows_with_values_in_ours"] = dropped.filter(
                pl.any_horizontal(pl.col(FEATURES).is_not_null())
            ).height
            # Feast's file store sorts by created, then event timestamp, with unstable sorts,
            # so at a tied event timestamp it may return an older version: counted, not failed.
            equal = (
                differing.height == ties
                and checks["anchor_unmatched_rows"] == 0
                and checks["anchor_duplicate_rows"] == 0
            )
            ok = ok and equal and checks["anchor_dropped_rows_with_values_in_ours"] == 0
            result.update(
                anchor_seconds=round(anchor["seconds"], 4),
                ratio=round(anchor["seconds"] / seconds, 2),
                anchor_max_rss_mib=anchor["max_rss_mib"],
                anchor_dropped_rows=dropped.height,
                compared_rows=matched.height,
                values_equal=equal,
                values_equal_strict=differing.height == 0,
                anchor_differing_rows=differing.height,
                anchor_tie_break_errors=ties,
            )
        result["checks"] = checks
    print(json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
