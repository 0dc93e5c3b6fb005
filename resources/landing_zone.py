"""Where landing files arrive, as a resource so tests and deployments point it elsewhere."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
from pydantic import Field

from medallion.landing import landing_files


class LandingZone(dg.ConfigurableResource):
    root: str = Field(description="Folder holding <table>/<YYYY-MM-DD>/ landing files.")

    def files(self, table: str, day: str) -> list[Path]:
        return landing_files(Path(self.root), table, date.fromisoformat(day))

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))
