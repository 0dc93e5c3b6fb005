"""The landing zone lands, reads and quarantines the same way in a local folder and on S3.

Every test runs twice: on a local folder and on an ``s3://`` prefix of a moto S3 server on
loopback. Files are prepared locally (the reference data generator writes local files) and, for
S3, uploaded with boto3; what the zone did is then looked at through the OS or boto3 too.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from medallion.landing import DELIVERED_MARKER
from reference_data import generate
from resources import LandingZone, Settings, build_resources
from tests.conftest import with_config
from tests.resources.test_s3_lakehouse import CREDENTIALS, s3_client, s3_endpoint  # noqa: F401 (a fixture)

DAY = "2024-03-01"
FOLDER = f"transactions/{DAY}"


@dataclass
class Landing:
    """A landing root as the producer and an operator see it, not through the code under test."""

    zone: LandingZone
    staging: Path
    """Where files are written before ``deliver``: the root itself when it is local."""
    bucket: str | None = None
    s3: Any = None

    def write(self, name: str, content: bytes) -> None:
        path = self.staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    def deliver(self) -> None:
        """Upload what was written, for an S3 root; a local root has it already."""
        if self.s3 is None:
            return
        for path in self.staging.rglob("*"):
            if path.is_file():
                key = f"landing/{path.relative_to(self.staging).as_posix()}"
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())
                path.unlink()

    def files(self) -> set[str]:
        """Every file under the root, by its name under the root."""
        if self.s3 is None:
            found = (p for p in self.staging.rglob("*") if p.is_file())
            return {p.relative_to(self.staging).as_posix() for p in found}
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="landing/")
        keys = (o["Key"] for o in listed.get("Contents", []))
        # Not the empty objects that pyarrow leaves as folder markers.
        return {key.removeprefix("landing/") for key in keys if not key.endswith("/")}

    def read(self, name: str) -> bytes:
        if self.s3 is None:
            return (self.staging / name).read_bytes()
        return self.s3.get_object(Bucket=self.bucket, Key=f"landing/{name}")["Body"].read()


@pytest.fixture(params=["local", "s3"])
def landing(request: pytest.FixtureRequest, tmp_path: Path) -> Landing:
    if request.param == "local":
        return Landing(LandingZone(root=str(tmp_path / "landing")), tmp_path / "landing")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"landing-{uuid.uuid4().hex[:12]}"
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket=bucket)
    settings = Settings.from_env(
        {"LANDING_URI": f"s3://{bucket}/landing/", "AWS_ENDPOINT_URL": endpoint, **CREDENTIALS}
    )
    zone = build_resources(settings)["landing"]
    return Landing(zone, tmp_path / "staging", bucket, s3)


def parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def test_land_reads_every_file_of_every_day(landing: Landing) -> None:
    config = with_config(days=2, customers=20, merchants=5, transactions_per_day=40)
    summary = generate(config, landing.staging)
    landing.deliver()
    assert len({f.format for f in summary.files}) > 1
    for expected in summary.files:
        day = expected.day.isoformat()
        (file,) = landing.zone.land(expected.table, day)
        assert landing.zone.relative(file.path) == f"{expected.table}/{day}/{expected.path.name}"
        assert file.error is None and file.format == expected.format
        assert file.frame.height + file.rejected.height == expected.rows


def test_unreadable_file_is_quarantined_and_still_counted(landing: Landing) -> None:
    good = parquet(pl.DataFrame({"id": ["a", "b"]}))
    landing.write(f"{FOLDER}/a.csv", b"id,amount\nx,1\ny,2,extra\n")
    landing.write(f"{FOLDER}/b.parquet", good[:20])
    landing.deliver()

    first = landing.zone.land("transactions", DAY)
    names = [landing.zone.relative(f.path) for f in first]
    assert names == [f"{FOLDER}/a.csv", f"{FOLDER}/b.parquet"]
    csv, broken = first
    assert csv.frame.rows() == [("x", "1")] and csv.rejected.height == 1 and csv.error is None
    assert broken.error is not None and broken.error.startswith("b.parquet: unreadable parquet")

    quarantined = f"_quarantine/{FOLDER}/b.parquet"
    assert landing.files() == {f"{FOLDER}/a.csv", quarantined, f"{quarantined}.error.json"}
    assert landing.read(quarantined) == good[:20]
    record = json.loads(landing.read(f"{quarantined}.error.json"))
    assert (record["file"], record["error"]) == (f"{FOLDER}/b.parquet", broken.error)

    again = landing.zone.land("transactions", DAY)
    assert [landing.zone.relative(f.path) for f in again] == names
    assert [f.error for f in again] == [None, broken.error]

    landing.write(f"{FOLDER}/b.parquet", good)  # delivered again: supersedes the quarantined copy
    landing.deliver()
    fixed = landing.zone.land("transactions", DAY)
    assert [f.error for f in fixed] == [None, None]
    assert fixed[1].frame["id"].to_list() == ["a", "b"]


def test_a_day_is_landed_only_once_delivered(landing: Landing) -> None:
    with pytest.raises(dg.Failure, match="not delivered yet") as failure:
        landing.zone.land("transactions", DAY)
    assert f"{landing.zone.root.rstrip('/')}/{FOLDER}" in str(failure.value)

    landing.write(f"{FOLDER}/{DELIVERED_MARKER}", b"")
    landing.deliver()
    assert landing.zone.land("transactions", DAY) == []


def test_landing_uri_on_s3_gets_the_s3_options_and_the_lake_keeps_its_own() -> None:
    env = {
        "LANDING_URI": "s3://feeds/landing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    resources = build_resources(Settings.from_env(env))
    assert resources["landing"].root == "s3://feeds/landing"
    assert resources["landing"].storage_options == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-1",
        "AWS_ALLOW_HTTP": "true",
    }
    assert resources["lakehouse"].storage_options == {}

    local = build_resources(Settings.from_env({**env, "LANDING_URI": "/srv/landing"}))
    assert local["landing"].storage_options == {}


@pytest.mark.parametrize("option", ["AWS_PROFILE", "AWS_SECRET_ACCESS_KEY"])
def test_unknown_s3_option_is_refused_not_ignored(option: str) -> None:
    """A key given as an option is refused too: keys stay in the environment."""
    zone = LandingZone(root="s3://feeds/landing", storage_options={option: "ops"})
    with pytest.raises(ValueError, match=option):
        zone.land("transactions", DAY)


def test_relative_names_the_file_under_the_root(tmp_path: Path) -> None:
    zone = LandingZone(root=f"{tmp_path}/landing/")
    path = (tmp_path / "landing" / FOLDER / "part-0.csv").as_posix()
    assert zone.relative(path) == f"{FOLDER}/part-0.csv"
    assert LandingZone(root="s3://feeds/in").relative("feeds/in/t/d/x.csv") == "t/d/x.csv"
