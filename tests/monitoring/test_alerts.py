"""Alerts: log levels by tier, and delivery to a real webhook server on loopback."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime

import pytest

from monitoring.alerts import Alert, Tier, send
from tests.webhook import Webhook

LOGGER = logging.getLogger("tests.monitoring.alerts")


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/T000/SECRET-TOKEN"


def _alert(tier: Tier, **tags: str) -> Alert:
    return Alert(
        tier=tier,
        title=f"{tier} alert",
        body="prediction drift over 0.3 on amount",
        source="drift_sensor",
        tags=tags,
    )


def test_a_warning_reaches_the_webhook_as_json(webhook: Webhook) -> None:
    alert = _alert(Tier.WARNING, asset="monitoring/drift_report")

    assert send(alert, logger=LOGGER, webhook_url=f"{webhook.url}/hooks/x") is True

    [posted] = webhook.received
    assert (posted.path, posted.content_type) == ("/hooks/x", "application/json")
    payload = posted.payload
    assert payload == alert.to_json()
    assert payload["tier"] == "warning"
    assert payload["tags"] == {"asset": "monitoring/drift_report"}
    assert payload["text"].startswith("[WARNING] warning alert")


def test_tiers_below_the_minimum_only_go_to_the_log(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER.name)

    assert send(_alert(Tier.INFO), logger=LOGGER, webhook_url=webhook.url) is True
    assert webhook.received == []
    assert "info alert" in caplog.text

    # A minimum from configuration may arrive as a plain string.
    send(_alert(Tier.WARNING), logger=LOGGER, webhook_url=webhook.url, min_webhook_tier="critical")
    send(_alert(Tier.CRITICAL), logger=LOGGER, webhook_url=webhook.url, min_webhook_tier="critical")
    assert [payload["tier"] for payload in webhook.payloads] == ["critical"]


def test_an_unreachable_webhook_returns_false_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    url = _closed_port_url()

    assert send(_alert(Tier.CRITICAL), logger=LOGGER, webhook_url=url, timeout_s=2.0) is False

    [failure] = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert failure.levelno == logging.ERROR
    assert "127.0.0.1" in failure.getMessage()
    assert "SECRET-TOKEN" not in caplog.text  # the URL's secret stays out of the log
    assert "critical alert" in caplog.text  # and the alert itself was still logged


def test_an_error_status_or_a_bad_url_returns_false(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    assert send(_alert(Tier.WARNING), logger=LOGGER, webhook_url=f"{webhook.url}/broken") is False
    assert send(_alert(Tier.WARNING), logger=LOGGER, webhook_url="file:///etc/hostname") is False
    assert send(_alert(Tier.WARNING), logger=LOGGER, webhook_url="not a url") is False
    assert len([r for r in caplog.records if "not delivered" in r.getMessage()]) == 3


@pytest.mark.parametrize(
    ("tier", "level"),
    [(Tier.CRITICAL, logging.ERROR), (Tier.WARNING, logging.WARNING), (Tier.INFO, logging.INFO)],
)
def test_log_level_follows_the_tier(
    tier: Tier, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER.name)

    assert send(_alert(tier, run_id="abc"), logger=LOGGER) is True

    [record] = caplog.records
    assert record.levelno == level
    assert "drift_sensor" in record.getMessage()
    assert "run_id=abc" in record.getMessage()


def test_tiers_order_by_severity_not_alphabet() -> None:
    assert Tier.INFO < Tier.WARNING < Tier.CRITICAL
    assert sorted([Tier.WARNING, Tier.CRITICAL, Tier.INFO]) == [
        Tier.INFO,
        Tier.WARNING,
        Tier.CRITICAL,
    ]
    assert Tier.CRITICAL.at_least(Tier.WARNING)
    assert not Tier.INFO.at_least(Tier.WARNING)


def test_an_alert_is_immutable_and_serialisable() -> None:
    tags = {"feature": "amount"}
    alert = Alert(
        tier="warning",
        title="t",
        body="b",
        source="run_failure",
        tags=tags,
        at=datetime(2024, 3, 1),
    )
    tags["feature"] = "changed"

    assert alert.tier is Tier.WARNING
    assert alert.tags == {"feature": "amount"}
    with pytest.raises(TypeError):
        alert.tags["feature"] = "x"  # type: ignore[index]
    assert alert.at == datetime(2024, 3, 1, tzinfo=UTC)
    payload = json.loads(json.dumps(alert.to_json()))
    assert payload["at"] == "2024-03-01T00:00:00+00:00"
    assert payload["source"] == "run_failure"
    assert Alert(Tier.INFO, "t", "b", "s").at.tzinfo is UTC
