"""The audit trail of the model registry: one Delta row per alias move, never rewritten."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from resources.lakehouse import Lakehouse
from training.registry import AliasChange

AUDIT_TABLE = "audit/model_registry"
AUDIT_SCHEMA = pl.Schema(
    {
        "model": pl.String,
        "alias": pl.String,
        "version": pl.String,
        "previous_version": pl.String,
        "actor": pl.String,
        "reason": pl.String,
        "at": pl.Datetime("us"),
    }
)
"""Spelled out so a first row without a previous version still gets a string column."""


def registry_audit(lakehouse: Lakehouse) -> Callable[[AliasChange], None]:
    """Append each change the registry reports to ``AUDIT_TABLE``."""

    def record(change: AliasChange) -> None:
        lakehouse.append(AUDIT_TABLE, pl.DataFrame([change.to_row()], schema=AUDIT_SCHEMA))

    return record
