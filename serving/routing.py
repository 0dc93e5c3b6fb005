"""Which model answers a request: champion only, an A/B split, a shadow, or a canary.

A customer's arm comes from a stable hash of their key, so the same customer sees the same model
in every worker and after every restart, and a canary that grows its share only ever moves more
customers onto the challenger, never back and forth. The canary is steered by the challenger's
own Prometheus metrics, read with the names the service exports them under.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal, get_args

from prometheus_client.parser import text_string_to_metric_families

Arm = Literal["champion", "challenger"]
Mode = Literal["champion", "ab", "shadow", "canary"]

PREDICTIONS_TOTAL = "fraud_predictions_total"
"""Counter, labels ``arm`` and ``decision``: one per request an arm answered."""
ERRORS_TOTAL = "fraud_prediction_errors_total"
"""Counter, label ``arm``: one per request an arm failed to answer (it has no decision)."""
LATENCY_SECONDS = "fraud_prediction_latency_seconds"
"""Histogram, label ``arm``: seconds an arm took to score a request."""
SHARE = "fraud_challenger_share"
"""Gauge: the share of customers this release routes to the challenger."""
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds for the latency histogram. A p99 read from it is the bound of the bucket that
holds it, so a latency budget that is one of these bounds is judged exactly; any other is judged
against the next bound up, which errs towards rolling back."""


@dataclass(frozen=True)
class Traffic:
    """How a deployment splits traffic between its champion and its challenger.

    ``challenger_share`` is the A/B split; a canary walks ``canary_steps`` instead, judging each
    step on at least ``min_requests`` challenger requests against the error and p99 budgets.
    Changing ``salt`` reshuffles which customers land on the challenger.
    """

    mode: Mode = "champion"
    challenger_share: float = 0.0
    canary_steps: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)
    max_error_rate: float = 0.01
    max_p99_ms: float = 50.0
    min_requests: int = 200
    salt: str = ""

    def __post_init__(self) -> None:
        if self.mode not in get_args(Mode):
            raise ValueError(f"mode {self.mode!r} is none of 'champion', 'ab', 'shadow', 'canary'")
        if not 0.0 <= self.challenger_share <= 1.0:
            raise ValueError(f"challenger_share {self.challenger_share} is not in [0, 1]")
        steps = self.canary_steps
        if not steps or any(not 0.0 < step <= 1.0 for step in steps):
            raise ValueError(f"canary_steps {steps} must be shares in (0, 1]")
        if any(later <= earlier for earlier, later in pairwise(steps)):
            raise ValueError(f"canary_steps {steps} must be strictly increasing")
        if steps[-1] != 1.0:
            raise ValueError(f"canary_steps {steps} must end at 1.0, the challenger taking all")
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise ValueError(f"max_error_rate {self.max_error_rate} is not in [0, 1]")
        if self.max_p99_ms <= 0:
            raise ValueError(f"max_p99_ms {self.max_p99_ms} must be positive")
        if self.min_requests < 1:
            raise ValueError(f"min_requests {self.min_requests} must be at least 1")


def bucket(key: str, salt: str = "") -> float:
    """``key``'s place in [0, 1), from blake2b: Python's hash() changes from process to process."""
    digest = hashlib.blake2b(f"{len(salt)}:{salt}{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def arm_for(key: str, share: float, salt: str = "") -> Arm:
    """The challenger takes the customers whose bucket is below ``share``, so raising the share
    keeps every customer it already had."""
    return "challenger" if bucket(key, salt) < share else "champion"


@dataclass(frozen=True)
class Route:
    """The arm whose answer is returned, and an arm also scored only to be logged."""

    served: Arm
    shadow: Arm | None = None


def route(traffic: Traffic, key: str, share: float = 0.0) -> Route:
    """Route customer ``key``; ``share`` is the canary's current share, which moves at run time
    and so is not part of the declaration (other modes ignore it)."""
    if traffic.mode == "ab":
        return Route(arm_for(key, traffic.challenger_share, traffic.salt))
    if traffic.mode == "shadow":
        return Route("champion", shadow="challenger")
    if traffic.mode == "canary":
        return Route(arm_for(key, share, traffic.salt))
    return Route("champion")


@dataclass(frozen=True)
class ArmStats:
    """One arm's counters as scraped: requests answered or failed, failures, and the latency
    histogram's cumulative counts by upper bound in seconds, kept so deltas stay exact."""

    requests: int
    errors: int
    buckets: tuple[tuple[float, int], ...] = ()

    @property
    def p99_ms(self) -> float:
        """Upper bound of the bucket holding the 99th percentile; 0 with nothing observed."""
        total = self.buckets[-1][1] if self.buckets else 0
        if total == 0:
            return 0.0
        rank = math.ceil(0.99 * total)
        return next(bound for bound, count in self.buckets if count >= rank) * 1000

    def since(self, earlier: ArmStats) -> ArmStats:
        """What happened between ``earlier`` and this scrape. Counters that went down mean the
        service restarted in between, so everything counted now happened since."""
        if self.requests < earlier.requests or self.errors < earlier.errors:
            return self
        before = dict(earlier.buckets)
        return ArmStats(
            self.requests - earlier.requests,
            self.errors - earlier.errors,
            tuple((bound, count - before.get(bound, 0)) for bound, count in self.buckets),
        )


def parse_metrics(text: str) -> dict[str, ArmStats]:
    """Each arm's stats from the service's Prometheus exposition ``text``.

    Samples are summed over every other label (decisions, and any the scraper adds); the
    ``_created`` timestamps prometheus_client exports beside counters are not counts and are
    skipped by matching whole sample names.
    """
    answered: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    latency: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            arm = sample.labels.get("arm")
            if arm is None:
                continue
            if sample.name == PREDICTIONS_TOTAL:
                answered[arm] += sample.value
            elif sample.name == ERRORS_TOTAL:
                errors[arm] += sample.value
            elif sample.name == f"{LATENCY_SECONDS}_bucket":
                latency[arm][float(sample.labels["le"])] += sample.value
    return {
        arm: ArmStats(
            requests=round(answered[arm] + errors[arm]),
            errors=round(errors[arm]),
            buckets=tuple((bound, round(count)) for bound, count in sorted(latency[arm].items())),
        )
        for arm in answered.keys() | errors.keys() | latency.keys()
    }


@dataclass(frozen=True)
class CanaryDecision:
    action: Literal["advance", "hold", "rollback", "complete"]
    share: float
    reason: str


def decide(traffic: Traffic, share: float, stats: ArmStats) -> CanaryDecision:
    """The canary's next move, from the challenger's ``stats`` since the current step began
    (``ArmStats.since`` of the scrape taken when it began).

    A step is judged once it has seen ``min_requests`` requests: over either budget rolls back
    to share 0, within both advances to the next step, or completes at 1.0. Before that it holds,
    except that more errors than the budget allows in ``min_requests`` requests roll back at
    once: the step can no longer pass, and waiting would only fail more customers.
    """
    if traffic.mode != "canary":
        raise ValueError(f"traffic mode is {traffic.mode!r}, not 'canary'")
    if share not in traffic.canary_steps:
        raise ValueError(
            f"share {share} is not one of the canary steps {traffic.canary_steps}; "
            "a rolled-back canary stays at 0 until it is deployed again"
        )
    if stats.requests < traffic.min_requests:
        allowed_errors = traffic.max_error_rate * traffic.min_requests
        if stats.errors > allowed_errors:
            return CanaryDecision(
                "rollback",
                0.0,
                f"{stats.errors} errors in {stats.requests} requests, more than the "
                f"{allowed_errors:g} the {traffic.max_error_rate:.2%} budget allows in "
                f"{traffic.min_requests}",
            )
        return CanaryDecision(
            "hold",
            share,
            f"{stats.requests} of {traffic.min_requests} requests needed to judge this step",
        )
    error_rate = stats.errors / stats.requests
    if error_rate > traffic.max_error_rate:
        return CanaryDecision(
            "rollback",
            0.0,
            f"error rate {error_rate:.2%} over the {traffic.max_error_rate:.2%} budget",
        )
    if stats.p99_ms > traffic.max_p99_ms:
        return CanaryDecision(
            "rollback",
            0.0,
            f"p99 {stats.p99_ms:g} ms over the {traffic.max_p99_ms:g} ms budget",
        )
    healthy = f"error rate {error_rate:.2%} and p99 {stats.p99_ms:g} ms within budget"
    if share == 1.0:
        return CanaryDecision("complete", 1.0, f"{healthy}; the challenger takes all traffic")
    following = next(step for step in traffic.canary_steps if step > share)
    return CanaryDecision("advance", following, healthy)


def challenger_share(text: str) -> float:
    """The ``SHARE`` gauge of a scrape; 0 when the service exports none."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == SHARE:
                return float(sample.value)
    return 0.0
