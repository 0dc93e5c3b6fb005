"""The deployed fraud service end to end: a real ``bentoml serve`` behind the local deploy target,
built from the champion of the seeded reference run."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import dagster as dg
import httpx
import polars as pl
import pytest

from assets.deployments.fraud_api import FRAUD_API
from assets.models.fraud_scorer import FRAUD_SCORER
from assets.training.fraud import FRAUD
from factories.deployments import deployment_asset
from registry import discover
from resources import build_resources
from sensors.releases import release_sensor
from serving.batch import score_events
from serving.bundle import ServedModel
from serving.edge import load_scorer
from tests.factories.reference_run import CUTOFF, Trained, trained_platform

pytestmark = [
    pytest.mark.filterwarnings("ignore:AssetExecutionContext.run_id is deprecated"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
]

TOKEN = "test-serving-token"
PAYMENTS = 40


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Served:
    trained: Trained
    url: str
    deployment: dg.AssetsDefinition
    metadata: dict[str, object]

    def post(
        self, transactions: list[dict[str, object]], token: str | None = TOKEN
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.post(
            f"{self.url}/predict", json={"transactions": transactions}, headers=headers, timeout=30
        )

    def deploy(self) -> dict[str, object]:
        result = dg.materialize(
            [self.deployment],
            resources=build_resources(self.trained.settings),
            instance=self.trained.instance,
        )
        [materialization] = result.asset_materializations_for_node("deployment__fraud_api")
        return {k: v.value for k, v in materialization.metadata.items()}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("platform")
    with trained_platform(home, trials=1, environment={"SERVING_TOKEN": TOKEN}) as trained:
        trained.registry().promote("fraud_scorer", "1", "alice", ("alice",), "reviewed")
        deployment = replace(FRAUD_API, port=free_port())
        asset = deployment_asset(deployment, FRAUD_SCORER, FRAUD)
        served = Served(trained, f"http://127.0.0.1:{deployment.port}", asset, {})
        served.metadata = served.deploy()
        try:
            yield served
        finally:
            build_resources(trained.settings)["serving"].target(deployment).stop(deployment.name)


@pytest.fixture(scope="module")
def payments(served: Served) -> pl.DataFrame:
    """New payments, an hour after the last day, by customers and at merchants the lake knows."""
    silver = served.trained.lakehouse().scan("silver/transactions").collect()
    return (
        silver.sort("transaction_id")
        .head(PAYMENTS)
        .select(
            pl.format("new-{}", pl.int_range(pl.len())).alias("transaction_id"),
            "customer_id",
            "merchant_id",
            "amount",
            "channel",
            "device",
            (
                pl.lit(CUTOFF) + timedelta(hours=1) + pl.duration(seconds=pl.int_range(pl.len()))
            ).alias("event_time"),
        )
    )


def as_json(frame: pl.DataFrame) -> list[dict[str, object]]:
    return [
        {**row, "event_time": row["event_time"].isoformat() + "Z"}
        for row in frame.iter_rows(named=True)
    ]


def test_the_deployment_records_its_bento_version_and_edge_parity(served: Served) -> None:
    meta = served.metadata
    assert meta["model_version"] == "1"
    assert str(meta["bento_tag"]).startswith("fraud_api:")
    assert meta["challenger_version"] == "none"
    assert meta["champion_onnx_max_abs_diff"] < 1e-4
    assert abs(meta["champion_onnx-int8_auroc_change"]) < 0.005
    assert meta["champion_onnx-int8_size_bytes"] < meta["champion_onnx_size_bytes"]


def test_a_served_score_equals_the_offline_score_of_the_same_payment(
    served: Served, payments: pl.DataFrame
) -> None:
    response = served.post(as_json(payments))
    assert response.status_code == 200, response.text
    answers = pl.DataFrame(response.json())
    trained = served.trained
    registry = trained.registry()
    folder = registry.download("fraud_scorer", "1", trained.settings.home / "offline")
    champion = ServedModel(
        "1", registry.threshold("fraud_scorer", "1"), load_scorer(folder, "torch")
    )
    declared = discover()
    offline = score_events(
        payments,
        "transaction_id",
        FRAUD,
        declared.views,
        trained.lakehouse().scan,
        declared.request_features,
        champion,
    )
    assert answers["transaction_id"].to_list() == payments["transaction_id"].to_list()
    assert answers["probability"].to_list() == pytest.approx(
        offline["probability"].to_list(), abs=1e-6
    )
    assert answers["fraud"].to_list() == offline["fraud"].to_list()
    assert set(answers["model_version"]) == {"1"} and set(answers["arm"]) == {"champion"}
    assert answers["request_id"].n_unique() == PAYMENTS


def test_the_api_needs_the_token_and_the_probes_do_not(
    served: Served, payments: pl.DataFrame
) -> None:
    assert served.post(as_json(payments.head(1)), token=None).status_code == 401
    assert served.post(as_json(payments.head(1)), token="wrong").status_code == 401
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{served.url}{path}", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", -5.0),
        ("amount", "twelve"),
        ("amount", 1e9),
        ("channel", "fax"),
        ("device", "toaster"),
        ("event_time", "yesterday"),
        ("customer_id", ""),
        ("merchant_id", None),
    ],
)
def test_a_malformed_field_is_refused_with_its_name(
    served: Served, payments: pl.DataFrame, field: str, value: object
) -> None:
    [payment] = as_json(payments.head(1))
    response = served.post([{**payment, field: value}])
    assert response.status_code == 400
    assert field in response.text


def test_an_unknown_customer_and_merchant_are_served(
    served: Served, payments: pl.DataFrame
) -> None:
    [payment] = as_json(payments.head(1))
    response = served.post([{**payment, "customer_id": "nobody", "merchant_id": "nowhere"}])
    assert response.status_code == 200, response.text
    [answer] = response.json()
    assert 0.0 <= answer["probability"] <= 1.0


def test_every_prediction_is_logged_with_its_model_and_features(
    served: Served, payments: pl.DataFrame
) -> None:
    response = served.post(as_json(payments.tail(5)))
    request_ids = {answer["request_id"] for answer in response.json()}
    lakehouse = served.trained.lakehouse()
    deadline = time.monotonic() + 30
    logged = pl.DataFrame()
    while time.monotonic() < deadline:
        if lakehouse.exists("monitoring/predictions"):
            logged = lakehouse.scan("monitoring/predictions").collect()
            if request_ids <= set(logged["request_id"]):
                break
        time.sleep(0.5)
    rows = logged.filter(pl.col("request_id").is_in(request_ids))
    assert rows.height == 5
    assert set(rows["model_version"]) == {"1"} and rows["served"].all()
    assert {"txn_count_24h", "amount_to_mean_30d", "is_foreign", "probability"} <= set(rows.columns)
    scraped = httpx.get(f"{served.url}/metrics", timeout=10).text
    assert 'fraud_predictions_total{arm="champion",decision="legitimate"}' in scraped
    assert "fraud_prediction_latency_seconds_bucket" in scraped


def test_a_new_release_switches_with_no_failed_request(
    served: Served, payments: pl.DataFrame
) -> None:
    body = as_json(payments.head(3))
    outcomes: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(headers={"authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
            while not stop.is_set():
                try:
                    code = client.post(f"{served.url}/predict", json={"transactions": body})
                    outcomes.append(code.status_code)
                except httpx.HTTPError:
                    outcomes.append(-1)

    sender = threading.Thread(target=loop)
    sender.start()
    try:
        before = served.metadata["bento_tag"]
        metadata = served.deploy()
    finally:
        stop.set()
        sender.join()
    assert metadata["bento_tag"] != before
    assert metadata["previous_version"] == "1"
    assert len(outcomes) > 20
    assert set(outcomes) == {200}


def test_the_release_sensor_deploys_an_approved_version_once(served: Served) -> None:
    """Promotion happens outside Dagster: the sensor notices the alias move and asks for one
    deploy, naming the versions, and nothing while the service serves what the registry says."""
    trained = served.trained
    deployment = replace(FRAUD_API, port=int(served.url.rsplit(":", 1)[1]))
    sensor = release_sensor(deployment)
    resources = build_resources(trained.settings)

    def tick() -> dg.SensorResult:
        with dg.build_sensor_context(instance=trained.instance, resources=resources) as context:
            result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        return result

    skipped = tick().skip_reason
    assert skipped is not None and "serves champion 1" in skipped.skip_message
    registry = trained.registry()
    client = trained.client()
    first = client.get_model_version("fraud_scorer", "1")
    second = str(client.create_model_version("fraud_scorer", first.source, first.run_id).version)
    registry.record_gates(
        "fraud_scorer", second, [], "test", registry.threshold("fraud_scorer", "1")
    )
    registry.promote("fraud_scorer", second, "alice", ("alice",), "retrained")
    try:
        [request] = tick().run_requests or []
        assert sensor.job_name == "deploy_fraud_api"
        assert request.tags["champion_version"] == second
        assert request.tags["previous_version"] == "1"
        assert request.run_key == tick().run_requests[0].run_key, "one key per release"
    finally:
        registry.promote("fraud_scorer", "1", "alice", ("alice",), "back")
