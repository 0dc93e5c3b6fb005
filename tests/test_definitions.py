"""The whole Definitions object loads under each deployment, and its asset graph is reviewed.

The snapshot (tests/snapshots/asset_graph.json) lists every asset with its inputs, the days of
each input it reads, and its checks. A change to the graph, intended or not, shows as a diff of
that file in review; `UPDATE_SNAPSHOTS=1 pytest tests/test_definitions.py` rewrites it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest

from definitions import build_definitions
from resources import Settings

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
LAYERS = {"bronze", "silver", "gold", "features"}
PRODUCTION = {
    "PLATFORM_ENV": "production",
    "LAKEHOUSE_URI": "s3://lake/prefix",
    "LANDING_URI": "s3://landing/prefix",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
    "AWS_REGION": "us-east-1",
    "ONLINE_STORE_URL": "redis://127.0.0.1:6379/0",
    "PIPELINE_START_DATE": "2025-01-01",
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
    "MLFLOW_ARTIFACT_ROOT": "s3://mlflow/artifacts",
    "OPTUNA_STORAGE": "postgresql://optuna@127.0.0.1:5432/optuna",
}


@pytest.mark.parametrize("environment", ["local", "production"])
def test_definitions_load_under_each_deployment(tmp_path: Path, environment: str) -> None:
    env = {"PLATFORM_HOME": str(tmp_path)} | (PRODUCTION if environment == "production" else {})
    settings = Settings.from_env(env)
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)
    scheduled = {
        "daily_ingest",
        "relabel_gold",
        "train_fraud_scorer",
        "canary_fraud_api",
        "score_fraud_api",
        "performance_fraud_api",
    }
    on_demand = {"deploy_fraud_api", "reference_fraud_api", "monitor_fraud_api"}
    assert {job.name for job in defs.jobs} == scheduled | on_demand
    assert {s.name for s in defs.schedules} == {f"{job}_schedule" for job in scheduled}
    gold = defs.resolve_assets_def(dg.AssetKey(["gold", "labeled_transactions"]))
    assert gold.partitions_def.start.date().isoformat() == settings.partition_start


def test_every_asset_is_catalogued(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert {k.path[0] for k in keys} >= LAYERS
    for key in keys:
        node = graph.get(key)
        assert node.description, key
        assert node.owners, key
        assert node.group_name == key.path[0], key
        assert node.kinds, key  # the UI's icons: polars + delta for a table, mlflow, ...


def graph_snapshot(defs: dg.Definitions) -> dict[str, object]:
    graph = defs.resolve_asset_graph()
    snapshot: dict[str, object] = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        assets_def = defs.resolve_assets_def(key)
        inputs = {}
        for parent in sorted(node.parent_keys):
            mapping = assets_def.infer_partition_mapping(key, parent, assets_def.partitions_def)
            inputs[parent.to_user_string()] = _mapping(mapping)
        snapshot[key.to_user_string()] = {
            "group": node.group_name,
            "inputs": inputs,
            "checks": {
                check.name: "blocking" if check.blocking else "warn"
                for check in assets_def.check_specs
                if check.asset_key == key
            },
        }
    return snapshot


def _mapping(mapping: dg.PartitionMapping) -> str:
    if isinstance(mapping, dg.TimeWindowPartitionMapping):
        return f"days {mapping.start_offset:+d}..{mapping.end_offset:+d}"
    return type(mapping).__name__


def test_asset_graph_matches_the_reviewed_snapshot(defs: dg.Definitions) -> None:
    current = graph_snapshot(defs)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), (
        "the asset graph changed: review the difference, then UPDATE_SNAPSHOTS=1"
    )


def test_gold_declares_late_label_lineage(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    gold = dg.AssetKey(["gold", "labeled_transactions"])
    parents = graph.get(gold).parent_keys
    assert dg.AssetKey(["silver", "chargebacks"]) in parents
    assert dg.AssetKey(["silver", "customers"]) in parents


def test_relabel_schedule_skips_when_no_gold_day_was_built(defs: dg.Definitions) -> None:
    schedule = next(s for s in defs.schedules if s.name == "relabel_gold_schedule")
    # The context is closed with the instance: left open, it keeps the instance's state storage
    # as the process's current one after the instance is gone, failing later tests' loads.
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2024, 6, 1, 3),
            repository_def=defs.get_repository_def(),
        ) as context,
    ):
        tick = schedule.evaluate_tick(context)
    assert not tick.run_requests
    assert "none was ever built" in tick.skip_message


def test_the_code_location_loads_as_dagster_loads_it(tmp_path: Path) -> None:
    """workspace.yaml's location, loaded by Dagster's own CLI with settings from the environment."""
    env = {
        **os.environ,
        "PLATFORM_HOME": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path),
        "PIPELINE_START_DATE": "2025-06-01",
    }
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Validation successful for code location mlops_platform" in done.stdout + done.stderr
