"""The whole Definitions object loads and reads as a catalog of the lakehouse."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from definitions import defs

LAYERS = {"bronze", "silver", "gold", "features"}


def test_definitions_load_and_validate() -> None:
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("daily_ingest")
    assert defs.resolve_job_def("relabel_gold")
    schedules = {s.name for s in defs.schedules}
    assert {"daily_ingest_schedule", "relabel_gold_schedule"} <= schedules


def test_every_asset_is_catalogued() -> None:
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert {k.path[0] for k in keys} >= LAYERS
    for key in keys:
        node = graph.get(key)
        assert node.description, key
        assert node.owners, key
        assert node.group_name == key.path[0], key
        assert "polars" in node.kinds, key


def test_gold_declares_late_label_lineage() -> None:
    graph = defs.resolve_asset_graph()
    gold = dg.AssetKey(["gold", "labeled_transactions"])
    parents = graph.get(gold).parent_keys
    assert dg.AssetKey(["silver", "chargebacks"]) in parents
    assert dg.AssetKey(["silver", "customers"]) in parents


def test_relabel_schedule_skips_when_no_gold_day_was_built() -> None:
    schedule = next(s for s in defs.schedules if s.name == "relabel_gold_schedule")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2024, 6, 1, 3),
            repository_def=defs.get_repository_def(),
        )
        tick = schedule.evaluate_tick(context)
    assert not tick.run_requests
    assert "none was ever built" in tick.skip_message
