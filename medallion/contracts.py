"""Data contracts for silver tables, written with pandera's polars backend.

Column names, types and nullability come from the landing contract in ``medallion.tables``;
this module adds the value rules. Rows breaking any rule are quarantined with the rule's name.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from medallion.pseudonymize import PSEUDONYM_SUFFIX
from medallion.tables import (
    AGE_BANDS,
    CATEGORIES,
    CHANNELS,
    COUNTRIES,
    CURRENCIES,
    DEVICES,
    MAX_AMOUNT,
    MIN_AMOUNT,
    REASON_CODES,
    SEGMENTS,
    Column,
    TableSpec,
)

_AMOUNT = [pa.Check.ge(MIN_AMOUNT), pa.Check.le(MAX_AMOUNT)]

VALUE_RULES: dict[str, dict[str, list[pa.Check]]] = {
    "customers": {
        "country": [pa.Check.isin(COUNTRIES)],
        "segment": [pa.Check.isin(SEGMENTS)],
        "age_band": [pa.Check.isin(AGE_BANDS)],
        "email": [pa.Check.str_contains("@")],
        "card_number": [pa.Check.str_matches(r"^\d{12,19}$")],
    },
    "merchants": {
        "category": [pa.Check.isin(CATEGORIES)],
        "country": [pa.Check.isin(COUNTRIES)],
    },
    "transactions": {
        "amount": _AMOUNT,
        "currency": [pa.Check.isin(CURRENCIES)],
        "channel": [pa.Check.isin(CHANNELS)],
        "device": [pa.Check.isin(DEVICES)],
    },
    "chargebacks": {
        "amount": _AMOUNT,
        "reason_code": [pa.Check.isin(REASON_CODES)],
    },
}


def _column(column: Column, dtype: object, checks: list[pa.Check]) -> pa.Column:
    return pa.Column(
        dtype, checks=checks, nullable=not column.required, description=column.description
    )


def landing_contract(spec: TableSpec) -> pa.DataFrameSchema:
    """Rules for typed rows before PII is pseudonymized; failures go to quarantine."""
    rules = VALUE_RULES[spec.name]
    columns = {c.name: _column(c, c.dtype, rules.get(c.name, [])) for c in spec.columns}
    return pa.DataFrameSchema(columns, name=spec.name, strict=False)


def silver_contract(spec: TableSpec) -> pa.DataFrameSchema:
    """The shape of the silver table: landing rules, PII only as pseudonyms, unique keys."""
    rules = VALUE_RULES[spec.name]
    pseudonym = [pa.Check.str_matches(r"^[0-9a-f]{64}$")]
    columns = {
        c.name + PSEUDONYM_SUFFIX if c.pii else c.name: _column(c, pl.String, pseudonym)
        if c.pii
        else _column(c, c.dtype, rules.get(c.name, []))
        for c in spec.columns
    }
    return pa.DataFrameSchema(
        columns, name=f"silver_{spec.name}", unique=spec.unique_key, strict=False
    )
