"""The one way assets read and write the lake: asset key ``a/b`` is the Delta table ``a/b``.

Assets take their inputs as lazy frames and return frames; this IO manager does the rest. Why
not dagster-deltalake-polars: it cannot merge a drifted schema into a table, does not report the
Delta version it committed, and cannot pin the versions a step read so the step can be
reproduced by time travel. Reads are pinned: each input is scanned at the table version current
when the step loaded it, and the output records those versions (``input_versions``) next to its
own ``delta_version``.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import polars as pl
from pydantic import PrivateAttr

from resources.lakehouse import Lakehouse
from resources.table_metadata import table_metadata

RAW_PII = "contains_raw_pii"
"""Definition metadata of an asset whose rows must never be previewed as they are."""


def table_of(key: dg.AssetKey) -> str:
    return "/".join(key.path)


def asset_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(table.split("/"))


class LakehouseIOManager(dg.ConfigurableIOManager):
    """Daily partitions replace exactly their day; unpartitioned assets replace the table."""

    lakehouse: Lakehouse
    _read: dict[tuple[str, str], dict[str, int]] = PrivateAttr(default_factory=dict)

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        table = table_of(context.asset_key)
        first = last = None
        if context.has_asset_partitions:
            window = context.asset_partitions_time_window
            first, last = window.start.date(), (window.end - timedelta(days=1)).date()
        read = self.lakehouse.scan_days(table, first, last)
        if read is None:
            # Never written: the asset's readiness check fails the step, naming the missing
            # partitions, before anything reads this.
            return pl.LazyFrame()
        frame, version = read
        step = context.step_context
        self._read.setdefault((step.run_id, step.step.key), {})[table] = version
        return frame

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        table = table_of(context.asset_key)
        if context.has_asset_partitions:
            commit = self.lakehouse.write_partition(table, obj, context.asset_partition_key)
        else:
            commit = self.lakehouse.write_table(table, obj)
        declared = context.definition_metadata.get("dagster/column_schema")
        descriptions = {c.name: c.description for c in declared.columns} if declared else {}
        metadata = table_metadata(
            commit,
            obj,
            preview=not context.definition_metadata.get(RAW_PII, False),
            descriptions={k: v for k, v in descriptions.items() if v},
        )
        read = self._read.get((context.run_id, context.step_key), {})
        if read:
            metadata["input_versions"] = read
        context.add_output_metadata(metadata)
