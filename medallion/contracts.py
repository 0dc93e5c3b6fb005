"""Data contracts for silver tables, written with pandera's polars backend.

Column names, types, nullability and value rules come from the source table declaration; this
module only turns them into pandera. Rows breaking any rule are quarantined with the rule's name.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from medallion.pseudonymize import PSEUDONYM_SUFFIX
from medallion.sources import Column, SourceTable


def value_checks(column: Column) -> list[pa.Check]:
    checks = []
    if column.allowed:
        checks.append(pa.Check.isin(column.allowed))
    if column.minimum is not None:
        checks.append(pa.Check.ge(column.minimum))
    if column.maximum is not None:
        checks.append(pa.Check.le(column.maximum))
    if column.pattern is not None:
        checks.append(pa.Check.str_matches(column.pattern))
    return checks


def _column(column: Column, dtype: object, checks: list[pa.Check]) -> pa.Column:
    return pa.Column(
        dtype, checks=checks, nullable=not column.required, description=column.description
    )


def landing_contract(spec: SourceTable) -> pa.DataFrameSchema:
    """Rules for typed rows before PII is pseudonymized; failures go to quarantine."""
    columns = {c.name: _column(c, c.dtype, value_checks(c)) for c in spec.columns}
    return pa.DataFrameSchema(columns, name=spec.name, strict=False)


def silver_contract(spec: SourceTable) -> pa.DataFrameSchema:
    """The shape of the silver table: landing rules, PII only as pseudonyms, unique keys."""
    pseudonym = [pa.Check.str_matches(r"^[0-9a-f]{64}$")]
    columns = {
        c.name + PSEUDONYM_SUFFIX if c.pii else c.name: _column(c, pl.String, pseudonym)
        if c.pii
        else _column(c, c.dtype, value_checks(c))
        for c in spec.columns
    }
    return pa.DataFrameSchema(
        columns, name=f"silver_{spec.name}", unique=spec.unique_key, strict=False
    )
