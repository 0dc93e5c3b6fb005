"""Turns each deployment declaration into ``deployment/<name>``, its canary step and its batch
scores ``predictions/<name>_daily``.

``deployment/<name>`` builds a Bento from the model's ``champion`` (and ``challenger``, when the
traffic policy scores one) with the platform's own code, so the service computes features with
the declarations training used; it exports both versions to ONNX and checks their parity on the
test split the version was evaluated on, then deploys through the ``serving`` resource. Each
traffic change (a canary step or a rollback) is a new release of the same Bento, so every change
is a recorded materialization, and a restarted backend counts its step's requests from zero.
"""

import shutil
import tempfile
from pathlib import Path

import dagster as dg
import httpx
import polars as pl

from factories.models import learned_from
from factories.readiness import require_ready_inputs
from feature_store.views import parse_reference
from registry import Registry
from resources.audit import registry_audit
from resources.lakehouse import Lakehouse
from resources.lakehouse_io import asset_key
from resources.serving import ServingTarget
from resources.tracking import MlflowTracking
from serving.batch import score_events
from serving.bundle import Bundle, BundledModel, ServedModel
from serving.deployments import Deployment
from serving.edge import export_edge, load_scorer
from serving.routing import challenger_share, decide, parse_metrics
from serving.scoring import CHALLENGER, CHAMPION
from training.models import Model
from training.registry import ModelRegistry
from training.sets import TrainingSet, feature_references

ROOT = Path(__file__).resolve().parents[1]
BENTO_SOURCES = (
    "assets",
    "feature_store",
    "medallion",
    "monitoring",
    "resources",
    "serving",
    "training",
)
"""The packages a service imports, copied into each Bento with ``registry.py``."""
BENTOFILE = """service: "serving.service:FraudService"
include:
  - "**/*.py"
  - "bundle/**"
exclude:
  - "**/__pycache__"
"""
GROUP = "deployment"


def deployment_assets(
    deployment: Deployment, registry: Registry, daily: dg.DailyPartitionsDefinition
) -> list[dg.AssetsDefinition]:
    model = registry.models[deployment.model]
    spec = registry.training_sets[model.training_set]
    return [
        deployment_asset(deployment, model, spec),
        canary_asset(deployment),
        batch_scores_asset(deployment, model, spec, registry, daily),
    ]


def deployment_asset(
    deployment: Deployment, model: Model, spec: TrainingSet
) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(deployment.table),
        deps=[asset_key(model.evaluation_table)],
        group_name=GROUP,
        owners=[deployment.owner],
        kinds={"bentoml", "onnx"},
        description=deployment.description,
        metadata={
            "model": deployment.model,
            "traffic": deployment.traffic.mode,
            "runtime": deployment.runtime,
            "batching": f"{deployment.batching.max_batch_size} rows / "
            f"{deployment.batching.max_latency_ms} ms",
            "port": deployment.port,
        },
    )
    def deployed(
        context: dg.AssetExecutionContext,
        mlflow: MlflowTracking,
        lakehouse: Lakehouse,
        serving: ServingTarget,
    ) -> dg.MaterializeResult:
        registry = mlflow.registry(registry_audit(lakehouse))
        versions = served_versions(registry, deployment)
        metadata: dict[str, object] = {}
        with tempfile.TemporaryDirectory() as scratch:
            build = Path(scratch) / "bento"
            copy_sources(build)
            bundled = []
            for arm, version in versions.items():
                test = learned_from(mlflow, lakehouse, model, spec, version).test
                labels = test[model.columns.label].cast(pl.Int8).to_numpy()
                folder = registry.download(model.name, version, Path(scratch) / arm)
                parity = export_edge(build / "bundle" / arm, folder, test, labels)
                metadata |= {
                    f"{arm}_{runtime}_{key}": value
                    for runtime, p in parity.items()
                    for key, value in p.to_metadata().items()
                    if key != "runtime"
                }
                threshold = registry.threshold(model.name, version)
                bundled.append(BundledModel(arm, version, threshold, arm))
            Bundle(
                deployment.name,
                model.name,
                tuple(bundled),
                runtime=deployment.runtime,
                batching=deployment.batching,
            ).write(build / "bundle")
            (build / "bentofile.yaml").write_text(BENTOFILE)
            tag = serving.build(build)
        share = _initial_share(deployment, versions)
        release = serving.release(deployment.name, tag, versions[CHAMPION], share)
        live = serving.target(deployment).deploy(release)
        context.log.info(f"{deployment.name}: {tag} serves at {live.url}")
        return dg.MaterializeResult(
            metadata={
                "bento_tag": tag,
                "url": dg.MetadataValue.url(live.url),
                "model_version": versions[CHAMPION],
                "challenger_version": versions.get(CHALLENGER, "none"),
                "canary_share": share,
                "previous_version": live.previous_version or "none",
                **metadata,
            }
        )

    return deployed


def canary_asset(deployment: Deployment) -> dg.AssetsDefinition:
    """One step of the canary: judge the challenger's requests since the step began against the
    budgets, then advance, hold, or roll back to the champion alone."""

    @dg.asset(
        key=asset_key(deployment.canary_table),
        deps=[asset_key(deployment.table)],
        group_name=GROUP,
        owners=[deployment.owner],
        kinds={"bentoml"},
        description=f"The canary ramp of {deployment.name}: "
        f"{' → '.join(f'{s:.0%}' for s in deployment.traffic.canary_steps)}, rolled back when "
        f"the challenger's error rate passes {deployment.traffic.max_error_rate:.1%} or its p99 "
        f"{deployment.traffic.max_p99_ms:g} ms.",
    )
    def canary(context: dg.AssetExecutionContext, serving: ServingTarget) -> dg.MaterializeResult:
        target = serving.target(deployment)
        live = target.current(deployment.name)
        if live is None:
            raise dg.Failure(f"{deployment.name} is not deployed: materialize {deployment.table}")
        if deployment.traffic.mode != "canary":
            raise dg.Failure(f"{deployment.name} runs traffic mode {deployment.traffic.mode!r}")
        scraped = httpx.get(f"{live.url}/metrics", timeout=10).text
        share = challenger_share(scraped)
        stats = parse_metrics(scraped).get(CHALLENGER)
        if stats is None or share == 0.0:
            return dg.MaterializeResult(metadata={"action": "none", "share": share})
        decision = decide(deployment.traffic, share, stats)
        if decision.share != share:
            target.deploy(
                serving.release(deployment.name, live.bento_tag, live.model_version, decision.share)
            )
        context.log.info(f"{deployment.name} canary: {decision.action} ({decision.reason})")
        return dg.MaterializeResult(
            metadata={
                "action": decision.action,
                "reason": decision.reason,
                "share_before": share,
                "share": decision.share,
                "challenger_requests": stats.requests,
                "challenger_errors": stats.errors,
                "challenger_p99_ms": stats.p99_ms,
            }
        )

    return canary


def batch_scores_asset(
    deployment: Deployment,
    model: Model,
    spec: TrainingSet,
    registry: Registry,
    daily: dg.DailyPartitionsDefinition,
) -> dg.AssetsDefinition:
    """A day of ``request_source`` events scored by the champion as they would have been served."""
    source = registry.sources[deployment.request_source]
    views = registry.views
    read = [
        views[parse_reference(r)[0]].table
        for r in feature_references(spec, registry.request_features)
    ]

    @dg.asset(
        key=asset_key(deployment.scores_table),
        partitions_def=daily,
        # The champion is read from the registry when the day is scored (its version is in the
        # metadata); a dependency on the unpartitioned evaluation would ask readiness for a day
        # of it that cannot exist.
        deps=[asset_key(t) for t in dict.fromkeys(read)],
        ins={"events": dg.AssetIn(asset_key(f"silver/{source.name}"))},
        group_name="predictions",
        owners=[deployment.owner],
        kinds={"polars", "delta"},
        description=f"Each day's {source.name} scored by the {model.name} champion with the "
        "features it would have been served with: what the service answers, in batch.",
    )
    def daily_scores(
        context: dg.AssetExecutionContext,
        events: pl.LazyFrame,
        mlflow: MlflowTracking,
        lakehouse: Lakehouse,
    ) -> pl.DataFrame:
        require_ready_inputs(context)
        models = mlflow.registry(registry_audit(lakehouse))
        with tempfile.TemporaryDirectory() as scratch:
            champion = served_champion(models, model.name, Path(scratch))
            scores = score_events(
                events.collect(),
                source.primary_key,
                spec,
                views,
                lakehouse.scan,
                registry.request_features,
                champion,
            )
        context.add_output_metadata(
            {"model_version": champion.version, "flagged": int(scores["fraud"].sum())}
        )
        return scores

    return daily_scores


def _champion(registry: ModelRegistry, model: str) -> str:
    champion = registry.version_of(model, CHAMPION)
    if champion is None:
        raise dg.Failure(
            f"{model} has no champion: approve a version that passed its gates "
            "(make approve MODEL=... VERSION=...)"
        )
    return champion


def served_champion(registry: ModelRegistry, model: str, scratch: Path) -> ServedModel:
    """The champion, downloaded into ``scratch`` and run by torch, as batch scoring runs it."""
    version = _champion(registry, model)
    folder = registry.download(model, version, scratch)
    return ServedModel(version, registry.threshold(model, version), load_scorer(folder, "torch"))


def served_versions(registry: ModelRegistry, deployment: Deployment) -> dict[str, str]:
    """What the deployment should serve now, by arm: the champion, and the challenger beside it
    unless the deployment serves the champion alone."""
    champion = _champion(registry, deployment.model)
    versions = {CHAMPION: champion}
    challenger = registry.version_of(deployment.model, CHALLENGER)
    if deployment.traffic.mode != "champion" and challenger not in (None, champion):
        versions[CHALLENGER] = challenger
    return versions


def _initial_share(deployment: Deployment, versions: dict[str, str]) -> float:
    traffic = deployment.traffic
    if CHALLENGER not in versions or traffic.mode != "canary":
        return 0.0
    return traffic.canary_steps[0]


def copy_sources(build: Path) -> None:
    """The platform code a service imports, into a Bento build context."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in BENTO_SOURCES:
        shutil.copytree(ROOT / package, build / package, ignore=ignore)
    shutil.copy2(ROOT / "registry.py", build / "registry.py")
