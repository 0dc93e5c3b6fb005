"""A data scientist adds a source table and a feature view by adding one file each.

Done here as they would do it: in a copy of the project, two new files under assets/, landing
files for the new table, one daily ingest. Nothing else in the copy is edited.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DEVICES = '''
"""Devices customers pay with, registered by the wallet team."""

import polars as pl

from medallion.sources import TIMESTAMP, Column, SourceTable

DEVICES = SourceTable(
    name="devices",
    primary_key="device_id",
    event_time="registered_at",
    description="Payment devices as the wallet team registers them.",
    event_time_tolerance=None,
    columns=(
        Column("device_id", pl.String(), description="Device identifier."),
        Column("os", pl.String(), allowed=("ios", "android"), description="Operating system."),
        Column("registered_at", TIMESTAMP, description="When the device was registered."),
    ),
)
'''

BIG_SPENDER = '''
"""Whether a payment was a big one, per customer."""

from datetime import timedelta

import polars as pl

from assets.entities import CUSTOMER
from feature_store.views import EVENT_TIMESTAMP, Feature, FeatureView


def big_spender(frame: pl.LazyFrame, window: object) -> pl.LazyFrame:
    return frame.select(
        "customer_id",
        pl.col("event_time").alias(EVENT_TIMESTAMP),
        (pl.col("amount") > 100).alias("is_big"),
    )


BIG_SPENDER = FeatureView(
    name="big_spender",
    entity=CUSTOMER,
    source=("gold", "labeled_transactions"),
    transform=big_spender,
    features=(Feature("is_big", pl.Boolean(), "Payment over 100 EUR."),),
    ttl=timedelta(days=1),
    owner="team:someone",
    freshness_sla=timedelta(days=1),
    description="A view added by dropping one file into assets/features/.",
)
'''

RUN = """
import json, sys
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from definitions import build_definitions
from reference_data import GeneratorConfig, generate
from resources import Lakehouse, Settings

settings = Settings.from_env({"PLATFORM_HOME": sys.argv[1], "PIPELINE_START_DATE": "2024-03-01"})
landing = Path(settings.landing_uri)
generate(
    GeneratorConfig(seed=3, start=date(2024, 3, 1), days=1, customers=100, merchants=20,
                    transactions_per_day=200),
    landing,
)
generated_devices = (landing / "devices").exists()
folder = landing / "devices" / "2024-03-01"
folder.mkdir(parents=True)
pl.DataFrame(
    {
        "device_id": ["D1", "D2", "D3"],
        "os": ["ios", "android", "windows-phone"],
        "registered_at": ["2024-03-01T08:00:00", "2024-03-01T09:00:00", "2024-03-01T10:00:00"],
    }
).write_csv(folder / "devices.csv")
(folder / "_SUCCESS").touch()

defs = build_definitions(settings)
with dg.instance_for_test() as instance:
    result = defs.resolve_job_def("daily_ingest").execute_in_process(
        partition_key="2024-03-01", instance=instance, raise_on_error=False
    )
lake = Lakehouse(root_uri=settings.lakehouse_uri)
rows = {
    table: lake.scan(table).select(pl.len()).collect().item()
    for table in ("bronze/devices", "silver/devices", "silver/devices_quarantine",
                  "features/big_spender")
}
print(json.dumps({"success": result.success, "generated_devices": generated_devices, "rows": rows}))
"""


def test_a_source_table_and_a_feature_view_are_one_file_each(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(
        ROOT,
        project,
        ignore=shutil.ignore_patterns(
            ".venv*", ".platform", ".git", "__pycache__", "*_cache", "tests", "bench"
        ),
    )
    (project / "assets" / "sources" / "devices.py").write_text(textwrap.dedent(DEVICES))
    (project / "assets" / "features" / "big_spender.py").write_text(textwrap.dedent(BIG_SPENDER))

    done = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path / "home")],
        cwd=project,
        env={**os.environ, "PSEUDONYMIZATION_KEY": "k" * 32, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["success"]
    assert not report["generated_devices"], "the generator writes only the tables it knows"
    # bronze = silver + quarantine: the unknown operating system is quarantined, nothing lost
    assert report["rows"]["bronze/devices"] == 3
    assert report["rows"]["silver/devices"] == 2
    assert report["rows"]["silver/devices_quarantine"] == 1
    assert report["rows"]["features/big_spender"] > 0
