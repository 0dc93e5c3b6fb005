"""A data scientist adds a source table, a feature view or a model by adding one file each.

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


SMALL_SCORER = '''
"""A smaller fraud model: the payment and the customer's velocity only."""

from training.data import Columns
from training.models import FloatRange, Gates, Model
from training.module import Hyperparameters

SMALL_SCORER = Model(
    name="small_scorer",
    training_set="fraud",
    columns=Columns(
        categorical=("channel",), numeric=("amount", "txn_count_24h"), label="is_fraud"
    ),
    hyperparameters=Hyperparameters(hidden=(32,)),
    search_space={"learning_rate": FloatRange(1e-4, 1e-2, log=True)},
    slices=("channel",),
    gates=Gates(
        min_auroc=0.7, min_average_precision=0.1, target_precision=0.5, max_bias_gap=0.3
    ),
    owner="team:someone",
)
'''

LIST_ASSETS = """
import json, sys
from definitions import build_definitions
from resources import Settings

defs = build_definitions(Settings.from_env({"PLATFORM_HOME": sys.argv[1]}))
graph = defs.resolve_asset_graph()
print(json.dumps({
    "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
    "jobs": sorted(job.name for job in defs.resolve_all_job_defs()),
}))
"""


def run_in_copy(tmp_path: Path, files: dict[str, str], script: str) -> dict[str, object]:
    """Run ``script`` in a copy of the project with ``files`` added; its last line as JSON."""
    project = tmp_path / "project"
    shutil.copytree(
        ROOT,
        project,
        ignore=shutil.ignore_patterns(
            ".venv*", ".platform", ".git", "__pycache__", "*_cache", "tests", "bench"
        ),
    )
    for path, text in files.items():
        (project / path).write_text(textwrap.dedent(text))
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "home")],
        cwd=project,
        env={**os.environ, "PSEUDONYMIZATION_KEY": "k" * 32, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_model_is_one_file(tmp_path: Path) -> None:
    report = run_in_copy(tmp_path, {"assets/models/small_scorer.py": SMALL_SCORER}, LIST_ASSETS)
    for asset in ("training/small_scorer_study", "models/small_scorer", "evaluation/small_scorer"):
        assert asset in report["assets"]
    assert "train_small_scorer" in report["jobs"]


def test_a_source_table_and_a_feature_view_are_one_file_each(tmp_path: Path) -> None:
    report = run_in_copy(
        tmp_path,
        {"assets/sources/devices.py": DEVICES, "assets/features/big_spender.py": BIG_SPENDER},
        RUN,
    )
    assert report["success"]
    assert not report["generated_devices"], "the generator writes only the tables it knows"
    # bronze = silver + quarantine: the unknown operating system is quarantined, nothing lost
    assert report["rows"]["bronze/devices"] == 3
    assert report["rows"]["silver/devices"] == 2
    assert report["rows"]["silver/devices_quarantine"] == 1
    assert report["rows"]["features/big_spender"] > 0
