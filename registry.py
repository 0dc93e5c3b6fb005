"""The registry: every declaration under ``assets/``, found once and checked as a whole.

A data scientist adds a source table, a gold table, an entity, a feature view, a request
feature, a training set or a model by adding a file to ``assets/`` that assigns it to a module-level
name; nothing keeps a list, so there is no second line to forget. What cannot work fails here,
at definitions load, naming the file: a file that declares nothing, a declaration that imports
Dagster, two declarations of one name, a reference to a table, entity or feature nobody
declared. Modules whose name starts with ``_`` hold shared helpers (value domains) and declare
nothing.

``python -m registry`` prints the catalog.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import polars as pl

from feature_store.catalog import feature_listing
from feature_store.views import (
    Entity,
    FeatureView,
    RequestFeature,
    group_references,
    parse_reference,
)
from medallion.derived import DerivedTable
from medallion.sources import SourceTable
from monitoring.monitors import PREDICTION, Monitor
from serving.deployments import Deployment
from training.models import Model
from training.sets import TrainingSet, entity_columns, feature_columns

Declaration = (
    Entity
    | SourceTable
    | DerivedTable
    | FeatureView
    | RequestFeature
    | TrainingSet
    | Model
    | Deployment
    | Monitor
)
KINDS: dict[type, str] = {
    Entity: "entity",
    SourceTable: "source table",
    DerivedTable: "derived table",
    FeatureView: "feature view",
    RequestFeature: "request feature",
    TrainingSet: "training set",
    Model: "model",
    Deployment: "deployment",
    Monitor: "monitor",
}


class DeclarationError(Exception):
    """A declaration that cannot work; the message names its file."""


@dataclass(frozen=True)
class Registry:
    entities: dict[str, Entity] = field(default_factory=dict)
    sources: dict[str, SourceTable] = field(default_factory=dict)
    derived: dict[str, DerivedTable] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    request_features: dict[str, RequestFeature] = field(default_factory=dict)
    training_sets: dict[str, TrainingSet] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)
    monitors: dict[str, Monitor] = field(default_factory=dict)
    files: dict[tuple[str, str], str] = field(default_factory=dict)
    """(kind, name) to the file that declares it, for messages."""

    def of_kind(self, kind: str) -> dict[str, Declaration]:
        return {
            "entity": self.entities,
            "source table": self.sources,
            "derived table": self.derived,
            "feature view": self.views,
            "request feature": self.request_features,
            "training set": self.training_sets,
            "model": self.models,
            "deployment": self.deployments,
            "monitor": self.monitors,
        }[kind]  # type: ignore[return-value]

    def tables(self) -> list[tuple[str, str]]:
        """Every table path of the lake a declaration makes, with the file that declares it."""
        tables = [
            (table, self.files["source table", name])
            for name in self.sources
            for table in (f"bronze/{name}", f"silver/{name}", f"silver/{name}_quarantine")
        ]
        tables += [(d.table, self.files["derived table", d.name]) for d in self.derived.values()]
        tables += [(v.table, self.files["feature view", v.name]) for v in self.views.values()]
        tables += [
            (t.table, self.files["training set", t.name]) for t in self.training_sets.values()
        ]
        return tables


def discover(package: ModuleType | str = "assets") -> Registry:
    """Import every module of ``package`` (and its subpackages) and collect its declarations."""
    if isinstance(package, str):
        package = importlib.import_module(package)
    registry = Registry()
    root = Path(package.__path__[0]).parent
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        file = str(Path(inspect.getfile(module)).relative_to(root))
        if info.ispkg or info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        _refuse_dagster(module, file)
        owned = _owned_declarations(module)
        if not owned:
            raise DeclarationError(
                f"{file} declares nothing: assign a SourceTable, DerivedTable, Entity, "
                "FeatureView, RequestFeature, TrainingSet, Model, Deployment or Monitor to a "
                "module-level "
                "name "
                "(helpers go in a module whose name starts with '_')"
            )
        for value in owned:
            _add(registry, value, file)
    _check_references(registry)
    return registry


def _refuse_dagster(module: ModuleType, file: str) -> None:
    for name, value in vars(module).items():
        origin = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", "")
        if isinstance(origin, str) and origin.split(".")[0] in ("dagster", "factories"):
            raise DeclarationError(
                f"{file} imports {origin} ({name}): declarations are plain objects; the "
                "factories turn them into Dagster assets"
            )


def _owned_declarations(module: ModuleType) -> list[Declaration]:
    """Declarations assigned in this module's own source, not ones it imported."""
    tree = ast.parse(inspect.getsource(module))
    assigned = [
        target.id
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    ]
    values = [vars(module)[name] for name in assigned if name in vars(module)]
    return [value for value in values if isinstance(value, tuple(KINDS))]


def _add(registry: Registry, value: Declaration, file: str) -> None:
    kind = KINDS[type(value)]
    found = registry.of_kind(kind)
    if value.name in found and found[value.name] is not value:
        raise DeclarationError(
            f"{file}: a second {kind} named {value.name!r}; the first is in "
            f"{registry.files[kind, value.name]}"
        )
    found[value.name] = value  # type: ignore[assignment]
    registry.files[kind, value.name] = file


def _check_references(registry: Registry) -> None:
    tables: dict[str, str] = {}
    for table, file in registry.tables():
        if table in tables:
            raise DeclarationError(
                f"{file}: the table {table!r} is already made by {tables[table]}"
            )
        tables[table] = file

    def fail(kind: str, name: str, problem: str) -> None:
        raise DeclarationError(f"{registry.files[kind, name]}: {kind} {name!r} {problem}")

    for source in registry.sources.values():
        for ref in source.references:
            if ref.table not in registry.sources:
                fail("source table", source.name, f"references undeclared table {ref.table!r}")
    for derived in registry.derived.values():
        for name, read in derived.inputs.items():
            if read.table not in tables:
                fail(
                    "derived table", derived.name, f"reads undeclared table {read.table!r} ({name})"
                )
    for view in registry.views.values():
        if "/".join(view.source) not in tables:
            fail("feature view", view.name, f"reads undeclared table {'/'.join(view.source)!r}")
        if registry.entities.get(view.entity.name) != view.entity:
            fail("feature view", view.name, f"is keyed by undeclared entity {view.entity.name!r}")
    for request in registry.request_features.values():
        for reference in request.inputs:
            view_name, feature = parse_reference(reference)
            if view_name not in registry.views:
                fail("request feature", request.name, f"reads undeclared view {view_name!r}")
            try:
                registry.views[view_name].feature(feature)
            except KeyError as error:
                fail("request feature", request.name, str(error))
    for spec in registry.training_sets.values():
        if spec.source not in tables:
            fail("training set", spec.name, f"reads undeclared table {spec.source!r}")
        try:
            group_references(spec.features, registry.views)
        except (KeyError, ValueError) as error:
            fail("training set", spec.name, str(error).strip("'\""))
        for name in spec.request_features:
            if name not in registry.request_features:
                fail("training set", spec.name, f"computes undeclared request feature {name!r}")
    for model in registry.models.values():
        if model.training_set not in registry.training_sets:
            fail("model", model.name, f"trains on undeclared training set {model.training_set!r}")
        spec = registry.training_sets[model.training_set]
        if missing := [c for c in model.inputs() if c not in spec.output_columns]:
            fail("model", model.name, f"reads {missing}, not columns of training set {spec.name!r}")
    for deployment in registry.deployments.values():
        _check_deployment(registry, deployment, fail)
    for monitor in registry.monitors.values():
        _check_monitor(registry, monitor, fail)


def _check_deployment(
    registry: Registry, deployment: Deployment, fail: Callable[[str, str, str], None]
) -> None:
    """A request must carry what the model's training set read from its source at the time:
    the kept columns (time included) and the keys of the views its features come from."""
    name = deployment.name
    if deployment.model not in registry.models:
        fail("deployment", name, f"serves undeclared model {deployment.model!r}")
    if deployment.request_source not in registry.sources:
        fail("deployment", name, f"takes rows of undeclared table {deployment.request_source!r}")
    source = registry.sources[deployment.request_source]
    if unknown := [f for f in deployment.request_fields if f not in source.column_names]:
        fail("deployment", name, f"request fields {unknown} are not columns of {source.name!r}")
    spec = registry.training_sets[registry.models[deployment.model].training_set]
    needed = [
        deployment.routing_key,
        *spec.columns,
        *entity_columns(spec, registry.views, registry.request_features),
        *(
            field
            for feature in spec.request_features
            for field in registry.request_features[feature].request_fields
        ),
    ]
    if missing := [c for c in dict.fromkeys(needed) if c not in deployment.request_fields]:
        fail("deployment", name, f"requests lack {missing}, which training set {spec.name!r} reads")


def _check_monitor(
    registry: Registry, monitor: Monitor, fail: Callable[[str, str, str], None]
) -> None:
    """A monitor profiles what its deployment's batch scores hold: the model's inputs."""
    if monitor.deployment not in registry.deployments:
        fail("monitor", monitor.name, f"watches undeclared deployment {monitor.deployment!r}")
    if monitor.label_source not in registry.sources:
        fail("monitor", monitor.name, f"labels from undeclared table {monitor.label_source!r}")
    model = registry.models[registry.deployments[monitor.deployment].model]
    inputs = [*feature_columns(registry.training_sets[model.training_set]), PREDICTION]
    if unknown := [f for f in monitor.features if f not in inputs]:
        fail("monitor", monitor.name, f"profiles {unknown}, which {model.name!r} does not read")


def catalog(registry: Registry) -> dict[str, pl.DataFrame]:
    """What a person browses: the source tables, derived tables, features and models declared."""
    return {
        "source tables": pl.DataFrame(
            [
                {
                    "table": s.name,
                    "key": s.primary_key,
                    "columns": len(s.columns),
                    "pii": ", ".join(s.pii),
                    "references": ", ".join(f"{r.column}->{r.table}" for r in s.references),
                    "file": registry.files["source table", s.name],
                }
                for s in registry.sources.values()
            ]
        ),
        "derived tables": pl.DataFrame(
            [
                {
                    "table": d.table,
                    "inputs": ", ".join(i.table for i in d.inputs.values()),
                    "checks": ", ".join(c.name for c in d.checks),
                    "file": registry.files["derived table", d.name],
                }
                for d in registry.derived.values()
            ]
        ),
        "features": feature_listing(registry.views, registry.request_features),
        "models": pl.DataFrame(
            [
                {
                    "model": m.name,
                    "training set": m.training_set,
                    "inputs": len(m.columns.categorical) + len(m.columns.numeric),
                    "tunes": ", ".join(m.search_space),
                    "maximizes": m.metric,
                    "promotion": "auto" if m.auto_promote else "approval",
                    "file": registry.files["model", m.name],
                }
                for m in registry.models.values()
            ]
        ),
        "deployments": pl.DataFrame(
            [
                {
                    "deployment": d.name,
                    "model": d.model,
                    "traffic": d.traffic.mode,
                    "runtime": d.runtime,
                    "port": d.port,
                    "file": registry.files["deployment", d.name],
                }
                for d in registry.deployments.values()
            ]
        ),
        "monitors": pl.DataFrame(
            [
                {
                    "monitor": m.name,
                    "deployment": m.deployment,
                    "reference days": m.reference_days,
                    "retrains on": m.retrain_on,
                    "cooldown (days)": m.cooldown.days,
                    "file": registry.files["monitor", m.name],
                }
                for m in registry.monitors.values()
            ]
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print every declaration.")
    parser.add_argument("package", nargs="?", default="assets", help="declarations package")
    registry = discover(parser.parse_args(argv).package)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
        for title, frame in catalog(registry).items():
            print(f"\n{title}:\n{frame}")


if __name__ == "__main__":
    main()
