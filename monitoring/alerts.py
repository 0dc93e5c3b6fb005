"""Tiered alerts: always to the log, and to a webhook (Slack, Teams, a pager bridge) when one is
configured and the alert matters enough to wake someone."""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Tier(StrEnum):
    """How urgent an alert is. Compares by severity, not alphabetically as a plain ``str`` would
    (where "critical" < "warning")."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    def at_least(self, other: Tier) -> bool:
        return self.severity >= other.severity

    def __lt__(self, other: object) -> bool:
        return self.severity < other.severity if isinstance(other, Tier) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.severity <= other.severity if isinstance(other, Tier) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.severity > other.severity if isinstance(other, Tier) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.severity >= other.severity if isinstance(other, Tier) else NotImplemented


_SEVERITY = {Tier.INFO: 0, Tier.WARNING: 1, Tier.CRITICAL: 2}


@dataclass(frozen=True)
class Alert:
    """One thing someone may need to act on. ``source`` names what raised it ("drift_sensor",
    "run_failure"); ``tags`` carry what a receiver filters or links on (asset, run id, feature)."""

    tier: Tier
    title: str
    body: str
    source: str
    tags: Mapping[str, str] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        object.__setattr__(self, "tier", Tier(self.tier))
        # A read-only copy, so the alert cannot change after it was built (or sent).
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))
        if self.at.tzinfo is None:  # the platform's naive timestamps are UTC
            object.__setattr__(self, "at", self.at.replace(tzinfo=UTC))

    def to_json(self) -> dict[str, Any]:
        """The webhook payload. ``text`` makes it readable as is by Slack-style incoming webhooks;
        the other keys are for receivers that route on them."""
        return {
            "text": f"[{self.tier.upper()}] {self.title}\n{self.body}",
            "tier": str(self.tier),
            "title": self.title,
            "body": self.body,
            "source": self.source,
            "tags": dict(self.tags),
            "at": self.at.isoformat(),
        }


def send(
    alert: Alert,
    *,
    logger: logging.Logger,
    webhook_url: str | None = None,
    min_webhook_tier: Tier = Tier.WARNING,
    timeout_s: float = 5.0,
) -> bool:
    """Log ``alert`` at its tier's level and POST it to ``webhook_url`` when set and the tier is at
    least ``min_webhook_tier``. True when every delivery attempted succeeded.

    Never raises: alerts are sent from failure paths (a failed run, a sensor), and an exception
    here would replace the failure being reported. The URL is never logged in full, since
    webhook URLs usually embed their secret token.
    """
    log = {Tier.CRITICAL: logger.error, Tier.WARNING: logger.warning, Tier.INFO: logger.info}
    tags = ", ".join(f"{k}={v}" for k, v in alert.tags.items())
    log[alert.tier](
        "alert [%s] %s: %s%s%s",
        alert.tier,
        alert.source,
        alert.title,
        f" ({tags})" if tags else "",
        f"\n{alert.body}" if alert.body else "",
    )
    if not webhook_url:
        return True
    host = "?"
    try:
        if alert.tier < Tier(min_webhook_tier):  # a tier from configuration may be a plain str
            return True
        parts = urllib.parse.urlsplit(webhook_url)
        host = parts.hostname or host
        if parts.scheme not in ("http", "https"):
            raise ValueError("the webhook URL must be http or https")
        request = urllib.request.Request(
            webhook_url,
            data=json.dumps(alert.to_json()).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except Exception as error:  # any failure to deliver is reported, never propagated
        reason = str(error).replace(webhook_url, host)
        logger.error(
            "alert %r not delivered to the webhook on %s: %s: %s",
            alert.title,
            host,
            type(error).__name__,
            reason,
        )
        return False
    return True
