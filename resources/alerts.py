"""Where alerts go: always the log, and a webhook when this deployment has one."""

from __future__ import annotations

import logging

import dagster as dg
from pydantic import Field

from monitoring import alerts
from monitoring.alerts import Alert, Tier


class Alerts(dg.ConfigurableResource):
    """The sensors' one way to raise an alert, so the webhook and its threshold are configuration
    (``ALERT_WEBHOOK_URL``) rather than code, and a test can point them at a local server."""

    webhook_url: str | None = Field(
        default=None,
        description="Incoming-webhook URL (Slack, Teams, a pager bridge); none: log only. "
        "It usually embeds a secret token: set it from the environment.",
    )
    min_webhook_tier: str = Field(
        default="warning",
        description="The least urgent tier also posted to the webhook: critical, warning or info.",
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A misspelt tier would otherwise surface only when an alert is sent, as "not delivered".
        if self.min_webhook_tier not in set(Tier):
            raise ValueError(
                f"min_webhook_tier must be one of {', '.join(Tier)}, got {self.min_webhook_tier!r}"
            )

    def send(self, alert: Alert, logger: logging.Logger) -> bool:
        """Log ``alert`` and post it to the webhook when its tier is high enough; True when
        delivered or not meant for the webhook. Never raises (see ``monitoring.alerts.send``)."""
        return alerts.send(
            alert,
            logger=logger,
            webhook_url=self.webhook_url,
            min_webhook_tier=Tier(self.min_webhook_tier),
        )
