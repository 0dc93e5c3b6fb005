"""The one place that decides local versus production configuration.

Everything is read from the environment, so switching a deployment is configuration only:

- ``PLATFORM_ENV``: ``local`` (default) or ``production``.
- ``PLATFORM_HOME``: folder for all local state (Dagster home, the Delta lake); git-ignored,
  defaults to ``.platform`` in the working directory.
- ``LAKEHOUSE_URI``: root of the Delta lake, a local path or ``s3://bucket/prefix``; defaults to
  ``$PLATFORM_HOME/lake`` locally and is required in production.
- ``LANDING_URI``: where landing files arrive; defaults to ``$PLATFORM_HOME/landing``.
- ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``: S3 access
  for an ``s3://`` lake, passed to delta-rs as storage options.
- ``ONLINE_STORE_URL``: ``sqlite:///path.db`` or ``redis://host:port/db``; defaults to a SQLite
  file under ``$PLATFORM_HOME`` locally and is required in production.
- ``PIPELINE_START_DATE``: first daily partition, ``YYYY-MM-DD``; defaults to 2024-01-01.
- ``PSEUDONYMIZATION_KEY``: secret for the keyed hash of PII; never has a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Environment = Literal["local", "production"]

_S3_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass(frozen=True)
class Settings:
    environment: Environment
    home: Path
    lakehouse_uri: str
    landing_uri: str
    online_store_url: str
    partition_start: str = "2024-01-01"
    storage_options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        environment = env.get("PLATFORM_ENV", "local")
        if environment not in ("local", "production"):
            raise ValueError(f"PLATFORM_ENV must be 'local' or 'production', got {environment!r}")
        home = Path(env.get("PLATFORM_HOME", ".platform")).resolve()
        for required in ("LAKEHOUSE_URI", "ONLINE_STORE_URL"):
            if environment == "production" and required not in env:
                raise ValueError(f"PLATFORM_ENV=production needs {required}")
        lakehouse_uri = env.get("LAKEHOUSE_URI", str(home / "lake"))
        storage_options = {}
        if lakehouse_uri.startswith("s3://"):
            storage_options = {var: env[var] for var in _S3_VARIABLES if var in env}
            if storage_options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
                storage_options["AWS_ALLOW_HTTP"] = "true"
        return cls(
            environment=environment,  # type: ignore[arg-type]
            home=home,
            lakehouse_uri=lakehouse_uri,
            landing_uri=env.get("LANDING_URI", str(home / "landing")),
            online_store_url=env.get("ONLINE_STORE_URL", f"sqlite:///{home / 'online.db'}"),
            partition_start=env.get("PIPELINE_START_DATE", "2024-01-01"),
            storage_options=storage_options,
        )
