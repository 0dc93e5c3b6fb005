"""The Feast side of bench/pit_join.py: one timed ``get_historical_features(...).to_df()``.

Runs in the separate Feast venv (Feast is not a project dependency), on files pit_join.py has
already written:
    .venv-bench/bin/python bench/feast_pit.py --features F.parquet --entities E.parquet \
        --ttl-seconds 172800 --workdir DIR --out result.parquet --timing timing.json
It sets up a throwaway local repo (file offline store, sqlite online store) in ``--workdir``,
warms Feast up on a few entity rows, then times the full call and writes Feast's rows to
``--out`` and ``{"seconds": ..., "rows": ..., "max_rss_mib": ...}`` to ``--timing``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path

VIEW = "customer_stats"
KEY = "customer_id"
FLOATS = ["f1", "f2", "f3", "f4"]
INTS = ["f5"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--entities", type=Path, required=True)
    parser.add_argument("--ttl-seconds", type=float, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timing", type=Path, required=True)
    parser.add_argument("--warmup-rows", type=int, default=100)
    args = parser.parse_args()

    import feast
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
    from feast.types import Float64, Int64, String

    repo = args.workdir
    repo.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(
        config=RepoConfig(
            project="pit_bench",
            provider="local",
            registry=str(repo / "registry.db"),
            online_store={"type": "sqlite", "path": str(repo / "online.db")},
            offline_store={"type": "file"},
            entity_key_serialization_version=3,
            repo_path=str(repo),
        )
    )
    customer = Entity(name="customer", join_keys=[KEY], value_type=ValueType.STRING)
    view = FeatureView(
        name=VIEW,
        entities=[customer],
        ttl=timedelta(seconds=args.ttl_seconds),
        schema=[Field(name=KEY, dtype=String)]
        + [Field(name=f, dtype=Float64) for f in FLOATS]
        + [Field(name=f, dtype=Int64) for f in INTS],
        source=FileSource(
            path=str(args.features.resolve()),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
        ),
        online=False,
    )
    store.apply([customer, view])
    refs = [f"{VIEW}:{f}" for f in FLOATS + INTS]

    # A plain pandas entity frame, as a Feast user passes it (tz-aware UTC timestamps).
    entity_df = pd.read_parquet(args.entities)

    def retrieve(frame: pd.DataFrame) -> pd.DataFrame:
        return store.get_historical_features(entity_df=frame, features=refs).to_df()

    retrieve(entity_df.head(args.warmup_rows))  # imports, registry cache, first file read
    begin = time.perf_counter()
    result = retrieve(entity_df)
    seconds = time.perf_counter() - begin

    result.to_parquet(args.out, index=False)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    args.timing.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "rows": len(result),
                "max_rss_mib": round(rss_kib / 1024),
                "feast": feast.__version__,
            }
        )
    )
    print(f"feast: {len(result)} rows in {seconds:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
