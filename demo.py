"""`make demo`: generate reference data, run the daily ingest for every day, then train, evaluate
and promote each declared model, deploy each declared service and score the last day in batch,
all on local defaults. The services keep running after the demo (`make stop` stops them).

Runs are recorded in the local Dagster instance ($DAGSTER_HOME), so `make dev` shows them,
with every asset's lineage, metadata and check results, in the UI.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import httpx
import polars as pl
import yaml
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

from definitions import build_definitions
from feature_store.online import open_online_store
from feature_store.serving import get_online_features
from jobs.promote import main as promote
from monitoring.monitors import Monitor
from reference_data import GeneratorConfig, generate
from registry import Registry, discover
from resources import Lakehouse, build_resources
from resources.audit import registry_audit
from resources.lakehouse_io import asset_key
from resources.settings import Settings
from serving.deployments import Deployment
from training.models import Model
from training.registry import CHAMPION

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
WORKSPACE = Path(__file__).parent / "workspace.yaml"


def repository_label() -> str:
    """The label the UI files a job's runs under: an in-process run carries no code location,
    so without it the demo's runs would show in the run list but not under their job."""
    location = yaml.safe_load(WORKSPACE.read_text())["load_from"][0]["python_file"]
    return f"__repository__@{location['location_name']}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=14, help="landing days, ending --end-date")
    parser.add_argument(
        "--end-date",
        type=date.fromisoformat,
        default=None,
        help="last landing day, YYYY-MM-DD (default: yesterday, UTC)",
    )
    parser.add_argument("--transactions-per-day", type=int, default=5_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--merchants", type=int, default=200)
    parser.add_argument("--drift-start-day", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--trials", type=int, default=8, help="Optuna trials per model (the declaration's: 0)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_env()
    end = args.end_date or datetime.now(UTC).date() - timedelta(days=1)
    start = end - timedelta(days=args.days - 1)
    if start.isoformat() < settings.partition_start:
        print(
            f"the demo's first day {start} lies before the first daily partition "
            f"{settings.partition_start} (PIPELINE_START_DATE, in $PLATFORM_HOME/calendar.env "
            "under make): use fewer --days or an earlier start date",
            file=sys.stderr,
        )
        return 2
    drift = args.drift_start_day if args.drift_start_day < args.days else None
    write_landing(args, start, drift, settings.landing_uri)
    print(f"landing files for {args.days} days from {start} written to {settings.landing_uri}")

    days = [(start + timedelta(days=offset)).isoformat() for offset in range(args.days)]
    defs = build_definitions(settings)
    tags = {REPOSITORY_LABEL_TAG: repository_label()}
    failed: list[str] = []
    with dg.DagsterInstance.get() as instance:
        # Ingest day by day as the schedule would, then relabel gold with late chargebacks.
        for job_name in ("daily_ingest", "relabel_gold"):
            job = defs.resolve_job_def(job_name)
            for day in days:
                result = job.execute_in_process(
                    partition_key=day,
                    instance=instance,
                    raise_on_error=False,
                    run_config=QUIET,
                    tags=tags,
                )
                print(f"{job_name} {day}: {'ok' if result.success else 'FAILED'}")
                if not result.success:
                    failed.append(f"{job_name} {day}")
        registry = discover()
        for model in registry.models.values():
            delay = registry.training_sets[model.training_set].label_delay
            if timedelta(days=args.days) <= delay:
                print(
                    f"not training {model.name}: its labels take {delay.days} days to arrive, "
                    f"so {args.days} days hold no labelled payments (use --days 14)"
                )
            elif not train(defs, instance, model, args.trials, tags, settings):
                failed.append(f"train_{model.name}")
        lakehouse = Lakehouse(
            root_uri=settings.lakehouse_uri, storage_options=settings.storage_options
        )
        models = build_resources(settings)["mlflow"].registry(registry_audit(lakehouse))
        for deployment in registry.deployments.values():
            if models.version_of(deployment.model, CHAMPION) is None:
                print(f"not deploying {deployment.name}: {deployment.model} has no champion yet")
                continue
            failed += serve(defs, instance, deployment, days[-1], tags, settings)
            for monitor in registry.monitors.values():
                if monitor.deployment == deployment.name:
                    failed += watch(defs, instance, monitor, days[-1], tags)
    print_summary(registry, lakehouse)
    as_of = datetime.combine(start + timedelta(days=args.days), time())
    print_online_sample(registry, lakehouse, settings.online_store_url, as_of)
    print("\nEvery declaration and feature: `make catalog`.")
    print("Open the Dagster UI with `make dev`, then http://127.0.0.1:3001")
    if failed:
        print(f"failed runs: {failed}", file=sys.stderr)
        return 1
    return 0


def write_landing(args: argparse.Namespace, start: date, drift: int | None, landing: str) -> None:
    """The reference data's landing files for ``args.days`` days from ``start``, drifting from
    day ``drift`` on (never with None)."""
    config = GeneratorConfig(
        seed=args.seed,
        start=start,
        days=args.days,
        customers=args.customers,
        merchants=args.merchants,
        transactions_per_day=args.transactions_per_day,
        drift_start_day=drift,
    )
    generate(config, Path(landing))


def train(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    model: Model,
    trials: int,
    tags: dict[str, str],
    settings: Settings,
) -> bool:
    """Train, evaluate, and, when every gate passes, approve the version as the local approver."""
    study = "__".join(asset_key(model.study_table).path)
    run_config = {**QUIET, "ops": {study: {"config": {"trials": trials or None}}}}
    result = defs.resolve_job_def(f"train_{model.name}").execute_in_process(
        instance=instance, raise_on_error=False, run_config=run_config, tags=tags
    )
    evaluations = result.asset_materializations_for_node(
        "__".join(asset_key(model.evaluation_table).path)
    )
    checks = result.get_asset_check_evaluations()
    if not evaluations or not checks:
        print(f"train_{model.name}: FAILED")
        return False
    # A version that misses a gate is an outcome, not a fault: it is registered, not promoted.
    print(f"train_{model.name}: {'ok' if result.success else 'ok, the version missed a gate'}")
    [evaluation] = evaluations
    shown = {k: v.value for k, v in evaluation.metadata.items()}
    version = shown["model_version"]
    print(
        f"{model.name} version {version}: test AUROC {shown['auroc']:.3f}, average precision "
        f"{shown['average_precision']:.3f} (LightGBM baseline {shown['baseline_auroc']:.3f}, "
        f"{shown['baseline_average_precision']:.3f})"
    )
    [check] = checks
    print(f"gates: {check.description}")
    if check.passed and settings.model_approvers:
        approver = settings.model_approvers[0]
        code = promote([model.name, str(version), "--approver", approver, "--reason", "make demo"])
        return code == 0
    return True


def serve(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    deployment: Deployment,
    last_day: str,
    tags: dict[str, str],
    settings: Settings,
) -> list[str]:
    """Deploy the service, score the last day in batch, and send it a few of that day's payments."""
    deployed = defs.resolve_job_def(f"deploy_{deployment.name}").execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET, tags=tags
    )
    print(f"{deployment.table}: {'ok' if deployed.success else 'FAILED'}")
    if not deployed.success:
        return [deployment.table]
    batch = defs.resolve_job_def(f"score_{deployment.name}").execute_in_process(
        instance=instance,
        partition_key=last_day,
        raise_on_error=False,
        run_config=QUIET,
        tags=tags,
    )
    print(f"{deployment.scores_table} {last_day}: {'ok' if batch.success else 'FAILED'}")
    url = f"http://127.0.0.1:{deployment.port}"
    lakehouse = Lakehouse(root_uri=settings.lakehouse_uri, storage_options=settings.storage_options)
    sample = (
        lakehouse.scan(f"silver/{deployment.request_source}", partitions=[last_day])
        .select(deployment.request_fields)
        .head(3)
        .collect()
    )
    payments = [
        {
            **row,
            "transaction_id": f"demo-{row['transaction_id']}",
            "event_time": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S}Z",
        }
        for row in sample.iter_rows(named=True)
    ]
    answer = httpx.post(
        f"{url}/predict",
        json={"transactions": payments},
        headers={"authorization": f"Bearer {settings.serving_token}"},
        timeout=30,
    )
    print(f"\n{deployment.name} serves at {url}; three of {last_day}'s payments, sent now:")
    print(pl.DataFrame(answer.json()) if answer.status_code == 200 else answer.text)
    print(
        f'try: curl -H "authorization: Bearer $SERVING_TOKEN" -H \'content-type: '
        f"application/json' -d '{{\"transactions\": [...]}}' {url}/predict (the token is in "
        "$PLATFORM_HOME/secrets.env)"
    )
    return [] if batch.success and answer.status_code == 200 else [f"serve {deployment.name}"]


def watch(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    monitor: Monitor,
    last_day: str,
    tags: dict[str, str],
) -> list[str]:
    """Profile the champion's training window, then judge the scored day's drift against it."""
    failed = []
    for job, partition in (
        (f"reference_{monitor.name}", None),
        (f"monitor_{monitor.name}", last_day),
        (f"performance_{monitor.name}", None),
    ):
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance,
            partition_key=partition,
            raise_on_error=False,
            run_config=QUIET,
            tags=tags,
        )
        shown_as = f"{job} {partition}" if partition else job
        print(f"{shown_as}: {'ok' if result.success else 'FAILED'}")
        if not result.success:
            failed.append(job)
            continue
        for report in result.asset_materializations_for_node(
            "__".join(asset_key(monitor.drift_table).path)
        ):
            shown = {k: v.value for k, v in report.metadata.items()}
            print(
                f"drift on {last_day}: {shown['worst_severity']}"
                f" ({shown['drifted_features'] or 'no feature'})"
            )
            if shown["worst_severity"] != "info":
                print(
                    "  (the demo's data drifts from --drift-start-day on: larger amounts, new "
                    "merchants; `make dev` starts the drift sensor, which asks for one "
                    "retraining on a critical report)"
                )
    return failed


def print_summary(registry: Registry, lakehouse: Lakehouse) -> None:
    rows = [
        {
            "table": table,
            "rows": lakehouse.scan(table).select(pl.len()).collect().item(),
            "version": lakehouse.version(table),
        }
        for table, _ in registry.tables()
        if lakehouse.exists(table)
    ]
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(pl.DataFrame(rows))


def print_online_sample(
    registry: Registry, lakehouse: Lakehouse, online_store_url: str, as_of: datetime
) -> None:
    """What a serving request would see: features of a few customers, read online."""
    view = registry.views["customer_activity"]
    customers = lakehouse.scan(view.table).select("customer_id").unique().sort("customer_id")
    request = customers.head(3).collect().with_columns(pl.lit(120.0).alias("amount"))
    with open_online_store(online_store_url) as store:
        vector = get_online_features(
            store,
            request,
            [f"customer_activity:{f}" for f in ("txn_count_24h", "amount_mean_30d")],
            views=registry.views,
            as_of=as_of,
            request_features=[registry.request_features["amount_to_mean_30d"]],
        )
    print(f"\nonline features as of {as_of}:")
    print(vector)


if __name__ == "__main__":
    sys.exit(main())
