"""What a request is: a row of the deployment's source table, held to the rules silver applies.

The request model is generated from the ``SourceTable`` declaration (types, required columns,
closed sets, ranges, patterns), so a payment the lake would quarantine is refused at the door
with a 4xx that names the field, and the two never disagree about what a valid payment is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from medallion.sources import Column, SourceTable

_PYTHON_TYPES: dict[type[pl.DataType], type] = {
    pl.String: str,
    pl.Float64: float,
    pl.Float32: float,
    pl.Int64: int,
    pl.Int32: int,
    pl.Boolean: bool,
    pl.Datetime: datetime,
}


class Prediction(BaseModel):
    """The answer for one payment."""

    transaction_id: str
    request_id: str
    probability: float
    fraud: bool
    """``probability`` at or above the threshold the evaluation chose for the served version."""
    threshold: float
    model_version: str
    arm: Literal["champion", "challenger"]


def request_model(source: SourceTable, fields: Sequence[str]) -> type[BaseModel]:
    """A pydantic model of ``fields`` of ``source``; extra fields a client sends are ignored."""
    columns = {c.name: c for c in source.columns}
    if unknown := [f for f in fields if f not in columns]:
        raise ValueError(f"request fields {unknown} are not columns of {source.name!r}")
    definitions: dict[str, Any] = {name: _field(columns[name]) for name in fields}
    validators = {
        f"_utc_{name}": field_validator(name)(_naive_utc)
        for name in fields
        if isinstance(columns[name].dtype, pl.Datetime)
    }
    return create_model(  # type: ignore[call-overload, no-any-return]
        source.name.capitalize(),
        __config__=ConfigDict(extra="ignore", allow_inf_nan=False, str_strip_whitespace=True),
        __validators__=validators,
        **definitions,
    )


def to_frame(requests: Sequence[BaseModel], source: SourceTable) -> pl.DataFrame:
    """Requests as one frame, with the lake's column types."""
    fields = list(type(requests[0]).model_fields) if requests else []
    schema = {c.name: c.dtype for c in source.columns if c.name in fields}
    return pl.DataFrame([r.model_dump() for r in requests], schema=schema, orient="row")


def _field(column: Column) -> tuple[Any, Any]:
    python = _PYTHON_TYPES.get(type(column.dtype))
    if python is None:
        raise ValueError(f"column {column.name!r} of type {column.dtype} cannot be requested")
    kind: Any = Literal[column.allowed] if column.allowed else python
    constraints: dict[str, Any] = {"description": column.description}
    if python is str and not column.allowed:
        constraints["min_length"] = 1
    if column.pattern:
        constraints["pattern"] = column.pattern
    if column.minimum is not None:
        constraints["ge"] = column.minimum
    if column.maximum is not None:
        constraints["le"] = column.maximum
    if column.required:
        return kind, Field(..., **constraints)
    return kind | None, Field(None, **constraints)


def _naive_utc(value: datetime) -> datetime:
    """The lake keeps naive UTC: an aware time is converted, a naive one is taken as UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
