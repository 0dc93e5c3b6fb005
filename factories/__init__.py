"""The Dagster side: what turns the declarations in ``assets/`` into assets, checks and metadata.

One factory per kind: ``sources`` (bronze and silver of a source table), ``derived`` (a gold
table), ``features`` (feature views and the online store), ``training`` (training sets), ``models``
(a model's study, training run and evaluation), ``deployments`` (a service, its canary and its
batch scores), ``monitors`` (a deployment's reference, daily profiles, drift and performance).
Engines (medallion/, feature_store/, training/) know nothing of Dagster or of the declarations;
the code here wires them together.
"""

from __future__ import annotations

import warnings

import dagster as dg

from factories.deployments import deployment_assets
from factories.derived import derived_asset
from factories.features import feature_view_asset, online_store_asset
from factories.models import model_assets
from factories.monitors import monitor_assets
from factories.sources import source_assets
from factories.training import training_set_asset
from registry import Registry
from resources.k8s import TrainingPod


def build_assets(
    registry: Registry, daily: dg.DailyPartitionsDefinition, training_pod: TrainingPod | None = None
) -> list[dg.AssetsDefinition]:
    """``training_pod``: where studies and training runs go in a cluster (``resources.k8s``)."""
    with warnings.catch_warnings():
        # Chosen on purpose, and said once here rather than on every command: partitioned asset
        # checks and day mappings that reach past the calendar's start are beta/preview APIs.
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            *source_assets(registry.sources, daily),
            *(derived_asset(table, daily) for table in registry.derived.values()),
            *(feature_view_asset(view, daily) for view in registry.views.values()),
            online_store_asset(registry.views, daily),
            *(
                training_set_asset(spec, registry.views, registry.request_features, daily)
                for spec in registry.training_sets.values()
            ),
            *(
                asset
                for model in registry.models.values()
                for asset in model_assets(
                    model, registry.training_sets[model.training_set], training_pod
                )
            ),
            *(
                asset
                for deployment in registry.deployments.values()
                for asset in deployment_assets(deployment, registry, daily)
            ),
            *(
                asset
                for monitor in registry.monitors.values()
                for asset in monitor_assets(monitor, registry, daily)
            ),
        ]
