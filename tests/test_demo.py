"""`make demo` works from the README on embedded defaults (a small day count here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent


def test_make_demo_builds_every_table(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PLATFORM_HOME": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DEMO_DAYS": "3",
        "DEMO_ARGS": "--transactions-per-day 300 --customers 200 --merchants 30",
    }
    done = subprocess.run(
        ["make", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "make dev" in done.stdout
    gold = pl.read_delta(str(tmp_path / "lake" / "gold" / "labeled_transactions"))
    assert gold.height > 600
    runs = list((tmp_path / "dagster_home").rglob("*.db"))
    assert runs, "runs are recorded in the local Dagster instance"
