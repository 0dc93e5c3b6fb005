"""Where landing files arrive, as a resource so tests and deployments point it elsewhere."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
from pydantic import Field

from medallion.landing import (
    LandingFile,
    landing_delivered,
    landing_files,
    quarantine_file,
    quarantined_files,
)


class LandingZone(dg.ConfigurableResource):
    root: str = Field(description="Folder holding <table>/<YYYY-MM-DD>/ landing files.")

    def files(self, table: str, day: str) -> list[Path]:
        return landing_files(Path(self.root), table, date.fromisoformat(day))

    def folder(self, table: str, day: str) -> Path:
        return Path(self.root) / table / date.fromisoformat(day).isoformat()

    def delivered(self, table: str, day: str) -> bool:
        return landing_delivered(Path(self.root), table, date.fromisoformat(day))

    def quarantine(self, path: Path, error: str) -> Path:
        return quarantine_file(Path(self.root), path, error)

    def quarantined(self, table: str, day: str) -> list[LandingFile]:
        return quarantined_files(Path(self.root), table, date.fromisoformat(day))

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))
