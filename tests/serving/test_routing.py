"""Routing: stable arms, the A/B split, shadow and canary, and the canary's decisions from the
service's own Prometheus exposition."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from serving.routing import (
    ERRORS_TOTAL,
    LATENCY_BUCKETS,
    LATENCY_SECONDS,
    PREDICTIONS_TOTAL,
    ArmStats,
    Route,
    Traffic,
    arm_for,
    bucket,
    decide,
    parse_metrics,
    route,
)

ROOT = Path(__file__).resolve().parents[2]
KEYS = [f"customer-{i}" for i in range(10_000)]
CANARY = Traffic(mode="canary", min_requests=200)


def test_bucket_is_stable_across_calls_and_processes() -> None:
    keys = ["customer-1", "customer-2", "c-\u00e9"]
    here = [bucket(key, "exp-7") for key in keys]
    assert here == [bucket(key, "exp-7") for key in keys]
    assert all(0.0 <= b < 1.0 for b in here)
    script = (
        "from serving.routing import bucket; "
        f"print(repr([bucket(key, 'exp-7') for key in {keys!r}]))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == repr(here)


def test_salt_reshuffles_customers() -> None:
    assert [bucket(key) for key in KEYS[:50]] != [bucket(key, "exp-8") for key in KEYS[:50]]


def test_split_is_near_the_share() -> None:
    challenger = sum(arm_for(key, 0.2) == "challenger" for key in KEYS)
    assert abs(challenger / len(KEYS) - 0.2) <= 0.02


def test_growing_the_share_keeps_every_challenger_customer() -> None:
    at_5 = {key for key in KEYS if arm_for(key, 0.05, "s") == "challenger"}
    at_25 = {key for key in KEYS if arm_for(key, 0.25, "s") == "challenger"}
    assert at_5 and at_5 < at_25
    assert all(arm_for(key, 1.0, "s") == "challenger" for key in KEYS[:100])
    assert all(arm_for(key, 0.0, "s") == "champion" for key in KEYS[:100])


def test_routes_by_mode() -> None:
    assert {route(Traffic(), key) for key in KEYS[:200]} == {Route("champion")}
    shadow = Traffic(mode="shadow", challenger_share=0.5)
    assert {route(shadow, key, 1.0) for key in KEYS[:200]} == {
        Route("champion", shadow="challenger")
    }
    ab = Traffic(mode="ab", challenger_share=0.3, salt="s")
    assert [route(ab, key).served for key in KEYS[:200]] == [
        arm_for(key, 0.3, "s") for key in KEYS[:200]
    ]
    canary = Traffic(mode="canary", challenger_share=0.9, salt="s")
    assert [route(canary, key, 0.05).served for key in KEYS[:200]] == [
        arm_for(key, 0.05, "s") for key in KEYS[:200]
    ]
    assert all(route(canary, key, 0.05).shadow is None for key in KEYS[:200])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"challenger_share": 1.5}, "challenger_share"),
        ({"challenger_share": -0.1}, "challenger_share"),
        ({"canary_steps": (0.1, 0.1, 1.0)}, "strictly increasing"),
        ({"canary_steps": (0.5, 0.25, 1.0)}, "strictly increasing"),
        ({"canary_steps": (0.0, 1.0)}, r"in \(0, 1\]"),
        ({"canary_steps": (0.5, 1.5)}, r"in \(0, 1\]"),
        ({"canary_steps": ()}, r"in \(0, 1\]"),
        ({"canary_steps": (0.1, 0.5)}, "end at 1.0"),
        ({"mode": "blue-green"}, "mode"),
        ({"min_requests": 0}, "min_requests"),
    ],
)
def test_traffic_rejects_bad_declarations(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Traffic(**changes)  # type: ignore[arg-type]


def exposition(challenger_latencies: list[float], challenger_errors: int) -> str:
    """The service's metrics as prometheus_client exports them, under the module's names."""
    registry = CollectorRegistry()
    predictions = Counter(PREDICTIONS_TOTAL, "answered", ["arm", "decision"], registry=registry)
    errors = Counter(ERRORS_TOTAL, "failed", ["arm"], registry=registry)
    latency = Histogram(
        LATENCY_SECONDS, "latency", ["arm"], registry=registry, buckets=LATENCY_BUCKETS
    )
    for seconds in challenger_latencies:
        predictions.labels("challenger", "approve").inc()
        latency.labels("challenger").observe(seconds)
    predictions.labels("champion", "approve").inc(30)
    predictions.labels("champion", "decline").inc(10)
    errors.labels("challenger").inc(challenger_errors)
    errors.labels("champion").inc(2)
    latency.labels("champion").observe(0.004)
    return generate_latest(registry).decode()


def test_parse_metrics_reads_a_real_exposition() -> None:
    stats = parse_metrics(exposition([0.003] * 98 + [0.02, 0.2], challenger_errors=3))
    assert set(stats) == {"champion", "challenger"}
    champion, challenger = stats["champion"], stats["challenger"]
    assert (champion.requests, champion.errors) == (42, 2)
    assert champion.p99_ms == 5.0
    assert (challenger.requests, challenger.errors) == (103, 3)
    assert challenger.buckets[-1] == (math.inf, 100)
    assert dict(challenger.buckets)[0.005] == 98
    # rank ceil(0.99 * 100) = 99 falls in the bucket up to 25 ms
    assert challenger.p99_ms == 25.0


def test_since_subtracts_buckets_exactly_and_survives_a_restart() -> None:
    earlier = parse_metrics(exposition([0.2] * 100, challenger_errors=1))["challenger"]
    later = parse_metrics(exposition([0.2] * 100 + [0.003] * 300, challenger_errors=2))[
        "challenger"
    ]
    step = later.since(earlier)
    assert (step.requests, step.errors) == (301, 1)
    assert step.p99_ms == 5.0
    assert later.p99_ms == 250.0
    assert earlier.since(later) == earlier


def stats(requests: int, errors: int = 0, p99_seconds: float = 0.01) -> ArmStats:
    return ArmStats(requests, errors, ((p99_seconds, requests), (math.inf, requests)))


def test_decide_holds_until_enough_requests() -> None:
    decision = decide(CANARY, 0.05, stats(199, errors=2))
    assert (decision.action, decision.share) == ("hold", 0.05)
    assert "199 of 200" in decision.reason


def test_decide_advances_step_by_step_then_completes() -> None:
    shares = [0.05]
    while (decision := decide(CANARY, shares[-1], stats(500, errors=2))).action == "advance":
        shares.append(decision.share)
    assert shares == [0.05, 0.25, 0.5, 1.0]
    assert (decision.action, decision.share) == ("complete", 1.0)


def test_decide_rolls_back_on_errors() -> None:
    decision = decide(CANARY, 0.25, stats(1000, errors=11))
    assert (decision.action, decision.share) == ("rollback", 0.0)
    assert "error rate 1.10%" in decision.reason


def test_decide_rolls_back_early_once_the_step_cannot_pass() -> None:
    decision = decide(CANARY, 0.05, stats(50, errors=3))
    assert (decision.action, decision.share) == ("rollback", 0.0)
    assert decide(CANARY, 0.05, stats(50, errors=2)).action == "hold"


def test_decide_rolls_back_on_latency() -> None:
    decision = decide(CANARY, 0.5, stats(1000, p99_seconds=0.075))
    assert (decision.action, decision.share) == ("rollback", 0.0)
    assert "p99 75 ms" in decision.reason
    assert decide(CANARY, 0.5, stats(1000, p99_seconds=0.05)).action == "advance"


def test_decide_from_scrapes() -> None:
    start = parse_metrics(exposition([0.003] * 50, challenger_errors=0))["challenger"]
    now = parse_metrics(exposition([0.003] * 50 + [0.004] * 250, challenger_errors=1))
    decision = decide(CANARY, 0.05, now["challenger"].since(start))
    assert (decision.action, decision.share) == ("advance", 0.25)


def test_decide_refuses_a_share_off_the_steps() -> None:
    with pytest.raises(ValueError, match="not one of the canary steps"):
        decide(CANARY, 0.0, stats(500))
    with pytest.raises(ValueError, match="not 'canary'"):
        decide(Traffic(mode="ab"), 0.05, stats(500))
