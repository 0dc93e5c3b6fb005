"""The registry finds every declaration once, and a declaration that cannot work fails at load
with a message naming its file."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from registry import DeclarationError, discover

SOURCE = """
import polars as pl
from medallion.sources import TIMESTAMP, Column, Reference, SourceTable

{name} = SourceTable(
    name="{table}",
    primary_key="id",
    event_time="at",
    references={references},
    columns=(Column("id", pl.String()), Column("other_id", pl.String()), Column("at", TIMESTAMP)),
)
"""

Package = Callable[..., str]


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Package:
    """A throwaway declarations package made of the given files (``{pkg}`` in a text is the
    package's name); returns that name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(**files: str) -> str:
        name = f"decls_{uuid.uuid4().hex[:8]}"
        root = tmp_path / name
        root.mkdir()
        (root / "__init__.py").write_text("")
        for file, text in files.items():
            path = root / f"{file.replace('.', '/')}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / "__init__.py").touch()
            path.write_text(textwrap.dedent(text).replace("{pkg}", name))
        return name

    yield make
    for module in [m for m in sys.modules if m.startswith("decls_")]:
        del sys.modules[module]


def source(table: str, references: str = "()", name: str = "TABLE") -> str:
    return SOURCE.format(name=name, table=table, references=references)


def test_the_reference_declarations_are_all_found() -> None:
    registry = discover()
    assert set(registry.sources) == {"customers", "merchants", "transactions", "chargebacks"}
    assert set(registry.derived) == {"labeled_transactions"}
    assert {"customer_activity", "merchant_risk"} <= set(registry.views)
    assert registry.files["source table", "customers"] == "assets/sources/customers.py"


def test_a_file_is_all_it_takes(package: Package) -> None:
    name = package(**{"sources.devices": source("devices"), "sources.cards": source("cards")})
    assert set(discover(name).sources) == {"devices", "cards"}


def test_an_imported_declaration_is_not_a_second_one(package: Package) -> None:
    name = package(
        a=source("devices"),
        b="from {pkg}.a import TABLE\n" + source("cards", name="CARDS"),
        _shared="HELPER = 1\n",
    )
    assert set(discover(name).sources) == {"devices", "cards"}


def test_two_declarations_of_one_name_fail_naming_both_files(package: Package) -> None:
    name = package(a=source("devices"), b=source("devices"))
    with pytest.raises(
        DeclarationError, match=r"b\.py: a second source table named 'devices'.*a\.py"
    ):
        discover(name)


def test_a_file_that_declares_nothing_fails_naming_it(package: Package) -> None:
    name = package(a=source("devices"), forgot="def transform(frame):\n    return frame\n")
    with pytest.raises(DeclarationError, match=r"forgot\.py declares nothing"):
        discover(name)


def test_a_declaration_importing_dagster_fails_naming_it(package: Package) -> None:
    name = package(a="import dagster as dg\n" + source("devices"))
    with pytest.raises(DeclarationError, match=r"a\.py imports dagster"):
        discover(name)


def test_a_reference_to_an_undeclared_table_fails_naming_the_file(package: Package) -> None:
    name = package(a=source("devices", references='(Reference("other_id", "owners"),)'))
    with pytest.raises(
        DeclarationError,
        match=r"a\.py: source table 'devices' references undeclared table 'owners'",
    ):
        discover(name)


def test_a_feature_view_on_an_undeclared_table_fails_naming_the_file(package: Package) -> None:
    view = """
    from datetime import timedelta
    import polars as pl
    from feature_store.views import Entity, Feature, FeatureView

    DEVICE = Entity("device", join_key="device_id")
    VIEW = FeatureView(
        name="device_use",
        entity=DEVICE,
        source=("gold", "nowhere"),
        transform=lambda frame, window: frame,
        features=(Feature("uses", pl.Int64(), "How often."),),
        ttl=timedelta(days=1),
        owner="team:x",
        freshness_sla=timedelta(days=1),
        description="A view on a table nobody declared.",
    )
    """
    name = package(view=view)
    with pytest.raises(
        DeclarationError,
        match=r"view\.py: feature view 'device_use' reads undeclared table 'gold/nowhere'",
    ):
        discover(name)


def test_a_training_set_on_an_undeclared_feature_fails_naming_the_file(package: Package) -> None:
    training = """
    from datetime import timedelta
    from training.sets import TrainingSet

    SET = TrainingSet(
        name="devices",
        source="silver/devices",
        columns=("id", "at"),
        event_time="at",
        features=("device_use:uses",),
        label="is_fraud",
        label_known_at="known_at",
        label_delay=timedelta(days=1),
        owner="team:x",
        description="A set joining a view nobody declared.",
    )
    """
    name = package(a=source("devices"), training=training)
    with pytest.raises(
        DeclarationError,
        match=r"training\.py: training set 'devices' unknown feature view 'device_use'",
    ):
        discover(name)
    name = package(a=source("devices"), training=training.replace("silver/devices", "gold/x"))
    with pytest.raises(
        DeclarationError, match=r"training\.py: training set 'devices' reads undeclared table"
    ):
        discover(name)
