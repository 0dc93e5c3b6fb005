"""The feature registry: every view and request feature declared in a package, found by looking.

Declaring a view in a module of ``assets/`` is all it takes to register it; nothing keeps a list.
``python -m feature_store.registry [package]`` prints the catalog (``assets`` by default).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType

import polars as pl

from feature_store.views import FeatureView, RequestFeature


@dataclass(frozen=True)
class Registry:
    views: dict[str, FeatureView]
    request_features: dict[str, RequestFeature]

    def listing(self) -> pl.DataFrame:
        """One row per feature, with its view's declaration: what a person browses."""
        rows = [
            {
                "view": view.name,
                "feature": f.name,
                "dtype": str(f.dtype),
                "description": f.description,
                "entity": view.entity.join_key,
                "ttl": str(view.ttl),
                "freshness_sla": str(view.freshness_sla),
                "owner": view.owner,
                "source": "/".join(view.source),
            }
            for view in self.views.values()
            for f in view.features
        ]
        rows += [
            {
                "view": "(request)",
                "feature": r.name,
                "dtype": str(r.dtype),
                "description": r.description,
                "entity": "",
                "ttl": "",
                "freshness_sla": "",
                "owner": "",
                "source": ", ".join([*r.request_fields, *r.inputs]),
            }
            for r in self.request_features.values()
        ]
        return pl.DataFrame(rows)


def discover(package: ModuleType) -> Registry:
    """Import every module of ``package`` and collect the declarations they hold."""
    views: dict[str, FeatureView] = {}
    requests: dict[str, RequestFeature] = {}
    for module_info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            found = views if isinstance(value, FeatureView) else requests
            if isinstance(value, (FeatureView, RequestFeature)):
                if found.get(value.name, value) is not value:
                    raise ValueError(f"{module_info.name}: a second declaration of {value.name!r}")
                found[value.name] = value
    return Registry(views=views, request_features=requests)


def main(argv: list[str] | None = None) -> None:
    """Print the catalog of the declarations package named on the command line."""
    parser = argparse.ArgumentParser(description="Print every declared feature.")
    parser.add_argument("package", nargs="?", default="assets", help="declarations package")
    package = importlib.import_module(parser.parse_args(argv).package)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
        print(discover(package).listing())


if __name__ == "__main__":
    main()
