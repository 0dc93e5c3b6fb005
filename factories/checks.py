"""Quality outcomes as asset checks, and write-audit-publish."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import dagster as dg

from medallion.quality import CheckOutcome
from resources.table_metadata import table_value


def check_result(
    check_name: str, outcome: CheckOutcome, *, asset_key: dg.AssetKey, blocking: bool
) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=outcome.passed,
        severity=severity,
        description=outcome.description,
        metadata={k: jsonable(v) for k, v in outcome.metadata.items()},
    )


def jsonable(value: Any) -> Any:
    """Metadata a person reads at a glance: samples as tables, rates rounded, mappings as JSON."""
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return table_value(value)
    if isinstance(value, (dict, list)):
        return dg.MetadataValue.json(json.loads(json.dumps(value, default=str)))
    if isinstance(value, float):
        return round(value, 4)
    return value


def publish(
    checks: list[dg.AssetCheckResult], outputs: Callable[[], Iterable[dg.Output]]
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """Write-audit-publish: the outputs are handed to the IO manager only when every blocking
    check passed.

    The checks run on the frame in memory. When a blocking one fails, its results are still
    reported, nothing is written and the step fails naming the checks, so the partition shows
    as failed and no later run reads it (see ``factories.readiness``).
    """
    blocked = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    if blocked:
        yield from checks
        raise dg.Failure(
            description="Not published: blocking checks failed: "
            + "; ".join(f"{c.check_name} ({c.description})" for c in blocked),
            metadata={"failed_checks": [c.check_name for c in blocked]},
        )
    yield from outputs()
    yield from checks
