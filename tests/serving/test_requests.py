"""What the service accepts: the source table's contract at the door, and the bearer token."""

from __future__ import annotations

import asyncio
from datetime import datetime

import bentoml
import pytest
from packaging.version import Version
from pydantic import ValidationError

from assets.deployments.fraud_api import FRAUD_API
from registry import discover
from serving.auth import BearerAuth
from serving.requests import request_model, to_frame

SOURCE = discover().sources["transactions"]
Transaction = request_model(SOURCE, FRAUD_API.request_fields)
VALID = {
    "transaction_id": "T1",
    "customer_id": "C1",
    "merchant_id": "M1",
    "amount": 12.5,
    "channel": "online",
    "device": "mobile",
    "event_time": "2026-11-27T10:00:00+01:00",
}


def test_bentoml_is_a_1_4_release_before_the_one_pip_cannot_install() -> None:
    # 1.4.40 needs a certifi the package index lacks, and pip then silently falls back to 0.5.
    assert Version("1.4") <= Version(bentoml.__version__) < Version("1.4.40")


def test_a_valid_payment_becomes_a_row_in_the_lake_types() -> None:
    frame = to_frame([Transaction.model_validate({**VALID, "currency": "EUR"})], SOURCE)
    assert frame.columns == list(FRAUD_API.request_fields)
    assert frame["event_time"].to_list() == [datetime(2026, 11, 27, 9)]
    assert frame.schema == {name: SOURCE.dtypes[name] for name in FRAUD_API.request_fields}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", 0.0),
        ("amount", 60_000.0),
        ("amount", float("nan")),
        ("amount", "12,50"),
        ("channel", "fax"),
        ("device", "toaster"),
        ("event_time", "not a time"),
        ("transaction_id", ""),
        ("customer_id", None),
        ("merchant_id", 42),
    ],
)
def test_a_value_the_lake_would_quarantine_is_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        Transaction.model_validate({**VALID, field: value})
    assert [error["loc"] for error in refused.value.errors()] == [(field,)]


def test_an_optional_field_may_be_left_out() -> None:
    without = {k: v for k, v in VALID.items() if k != "device"}
    assert to_frame([Transaction.model_validate(without)], SOURCE)["device"].to_list() == [None]


def call(app: BearerAuth, path: str, authorization: str | None) -> int:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    headers = [(b"authorization", authorization.encode())] if authorization else []
    scope = {"type": "http", "path": path, "headers": headers}
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return int(sent[0]["status"])  # type: ignore[call-overload]


async def ok(scope: object, receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]


def test_the_api_needs_the_token_and_the_probes_do_not() -> None:
    app = BearerAuth(ok, "s3cret-token")
    assert call(app, "/predict", "Bearer s3cret-token") == 200
    assert call(app, "/predict", None) == 401
    assert call(app, "/predict", "Bearer wrong") == 401
    assert call(app, "/predict", "s3cret-token") == 401
    for probe in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert call(app, probe, None) == 200


def test_no_token_means_no_service() -> None:
    with pytest.raises(RuntimeError, match="SERVING_TOKEN"):
        BearerAuth(ok, "")
