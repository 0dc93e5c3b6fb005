"""Where landing files arrive, as a resource so tests and deployments point it elsewhere.

The root is a local folder or an ``s3://bucket/prefix``; either way the files are reached through
a pyarrow filesystem, so landing, reading and quarantining are one code path.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
from pydantic import Field

from medallion.landing import (
    DELIVERED_MARKER,
    FsPath,
    LandingFile,
    landing_delivered,
    landing_files,
    quarantine_file,
    quarantined_files,
    read_landing_file,
    relative_path,
)
from resources.object_store import S3_SCHEME, open_filesystem


class LandingZone(dg.ConfigurableResource):
    """Landing files under one root: ``<table>/<YYYY-MM-DD>/`` folders, a local folder or S3."""

    root: str = Field(
        description="Folder or s3://bucket/prefix holding <table>/<YYYY-MM-DD>/ landing files."
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="S3 endpoint and region for an s3:// root, named as the lakehouse names "
        "them (AWS_ENDPOINT_URL, AWS_REGION, AWS_ALLOW_HTTP); the keys come from the environment.",
    )

    def land(self, table: str, day: str) -> list[LandingFile]:
        """Every file of the day, read from the inbox or known from the landing quarantine.

        An unreadable inbox file is moved to the quarantine now; one quarantined by an earlier
        run still counts (unless delivered again since). Each keeps the path it landed under, so
        its lineage (``relative``) is the same on every run. Sorted by file name.
        """
        filesystem, root = open_filesystem(self.root, self.storage_options)
        on = date.fromisoformat(day)
        if not landing_delivered(root, table, on, filesystem):
            raise dg.Failure(
                f"bronze/{table} {day}: nothing has landed in "
                f"{self.root.rstrip('/')}/{table}/{on.isoformat()}: no data file and no "
                f"{DELIVERED_MARKER} marker, so the day is not delivered yet."
            )
        earlier = quarantined_files(root, table, on, filesystem)
        files = [
            read_landing_file(path, filesystem)
            for path in landing_files(root, table, on, filesystem)
        ]
        for file in files:
            if file.error is not None:
                quarantine_file(root, file.path, file.error, filesystem)
        return sorted([*earlier, *files], key=lambda f: f.path.name)

    def relative(self, path: FsPath) -> str:
        """A ``LandingFile.path`` as its name under the root, e.g.
        ``transactions/2024-03-01/part-0.csv``: the lineage bronze records, wherever the root is."""
        return relative_path(self.root.removeprefix(S3_SCHEME), path)
