"""Keyed pseudonyms for PII: stable for joins, irreversible without the secret key."""

from __future__ import annotations

import hashlib
import hmac

import polars as pl

PSEUDONYM_SUFFIX = "_pseudonym"


def keyed_hash(values: pl.Series, key: bytes) -> pl.Series:
    """HMAC-SHA256 of each trimmed, lower-cased value as hex; nulls stay null.

    Hashes each distinct value once, so a column with repeated values costs little.
    """
    if not key:
        raise ValueError("the pseudonymization key is empty; set PSEUDONYMIZATION_KEY")
    normalized = values.cast(pl.String).str.strip_chars().str.to_lowercase()
    distinct = normalized.drop_nulls().unique()
    digests = pl.Series(
        [hmac.new(key, v.encode(), hashlib.sha256).hexdigest() for v in distinct],
        dtype=pl.String,
    )
    mapping = dict(zip(distinct, digests, strict=True))
    return normalized.replace_strict(mapping, default=None, return_dtype=pl.String).alias(
        values.name
    )


def pseudonymize(
    frame: pl.DataFrame, columns: tuple[str, ...], key: bytes, *, rename: bool = True
) -> pl.DataFrame:
    """Replace each PII column by ``<name>_pseudonym`` (or, not renamed, in place).

    The raw values are gone afterwards either way.
    """
    present = [c for c in columns if c in frame.columns]
    hashed = frame.with_columns(keyed_hash(frame[c], key) for c in present)
    return hashed.rename({c: c + PSEUDONYM_SUFFIX for c in present}) if rename else hashed
