"""Deployments as declarations: which model serves, what a request carries, how traffic splits.

A ``Deployment`` (one file in ``assets/deployments/``) names the model it serves (its ``champion``,
and its ``challenger`` when the traffic policy uses one), the source table whose columns a request
carries, the traffic policy, adaptive batching and the runtime the model runs on. The factory
(``factories.deployments``) turns it into the asset ``deployment/<name>``; the features a request
needs are not repeated here: they are the model's training set's, read and computed by the same
declarations as in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serving.edge import Runtime
from serving.routing import Traffic


@dataclass(frozen=True)
class Batching:
    """BentoML's adaptive batching of the model call: requests that arrive together share one
    call, up to ``max_batch_size`` rows (1: no batching).

    ``max_latency_ms`` is not a wait: BentoML refuses (503) a request it expects to finish later
    than that, and its estimate runs ahead of the truth, so the bound must sit far above the
    latency the service is meant to keep, or it sheds requests it could have answered (measured
    on 2 cores: a 10 ms bound refused 90-99% of requests from 4 connections on; a 200 ms bound
    still refused 1-2 of ~2,000 at 4 and 16 connections, with p99s of 43 and 85 ms).
    """

    max_batch_size: int = 32
    max_latency_ms: int = 1000

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_latency_ms < 1:
            raise ValueError(f"batching needs a size and a latency of at least 1, got {self}")


@dataclass(frozen=True)
class Scaling:
    """Replicas of the service in a cluster, added and removed on CPU: scoring is CPU-bound.

    ``cpu`` and ``memory`` are each replica's requests (the autoscaler's 100%); locally one process
    serves and this is not used.
    """

    min_replicas: int = 2
    max_replicas: int = 10
    target_cpu_percent: int = 70
    cpu: str = "1"
    memory: str = "2Gi"

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"scaling needs 1 <= min_replicas <= max_replicas, got {self}")
        if not 1 <= self.target_cpu_percent <= 100:
            raise ValueError(f"target_cpu_percent must lie in 1..100, got {self}")


@dataclass(frozen=True)
class Deployment:
    """One online service, declared: the asset ``deployment/<name>`` and its Bento ``<name>``."""

    name: str
    model: str
    """The ``Model`` declaration whose registered versions serve."""
    request_source: str
    """The ``SourceTable`` a request is a row of, as the payment system sends it."""
    request_fields: tuple[str, ...]
    """The source columns a request carries; the entity keys among them find stored features."""
    owner: str
    description: str = ""
    traffic: Traffic = field(default_factory=Traffic)
    routing_key: str = "customer_id"
    """The request field whose stable hash picks a request's arm: one customer, one arm."""
    batching: Batching = field(default_factory=Batching)
    runtime: Runtime = "torch"
    """What runs the model: its torch weights, or its ONNX export (fp32 or INT8) on onnxruntime."""
    port: int = 3100
    """The stable local port; Dagster's UI keeps 3000 and ``make dev`` 3001."""
    scaling: Scaling = field(default_factory=Scaling)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"deployment {self.name!r}: its name must be an identifier")
        if not 1024 <= self.port <= 65535 or self.port in (3000, 3001):
            raise ValueError(f"deployment {self.name!r}: port {self.port} is reserved or invalid")

    @property
    def table(self) -> str:
        return f"deployment/{self.name}"

    @property
    def canary_table(self) -> str:
        return f"deployment/{self.name}_canary"

    @property
    def scores_table(self) -> str:
        """The batch scores: the same features and model, a day at a time."""
        return f"predictions/{self.name}_daily_scores"
