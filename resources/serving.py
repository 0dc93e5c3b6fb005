"""Where deployments go: Bentos built into a local store, served by a deploy target."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from pydantic import Field

from serving.deploy import DeployTarget, LocalTarget, Release, bentoml_command

BUILD_TIMEOUT_S = 600


class ServingTarget(dg.ConfigurableResource):
    """``bentoml build`` into ``bentoml_home`` and a ``LocalTarget`` under ``state_dir``.

    The backend inherits the environment of the supervisor that starts it, secrets included (S3
    keys); ``environment`` adds the settings the service must agree on with the platform (lake,
    online store), written out so a supervisor started earlier cannot serve stale ones.
    """

    bentoml_home: str = Field(description="BentoML's home: the local Bento store.")
    state_dir: str = Field(description="Supervisor state and logs, one folder per deployment.")
    host: str = Field(default="127.0.0.1", description="Address the stable port listens on.")
    token: str = Field(description="Bearer token the service requires (SERVING_TOKEN).")
    environment: dict[str, str] = Field(
        default_factory=dict, description="Settings the service reads (lake, online store)."
    )

    def build(self, context_dir: Path) -> str:
        """Build the Bento in ``context_dir`` (a ``bentofile.yaml`` and its sources); its tag."""
        # The build process inherits this one's environment (it is a launcher, not a reader of
        # settings); only BentoML's own home is set here.
        built = subprocess.run(
            [sys.executable, "-m", "bentoml", "build", str(context_dir), "--output", "tag"],
            cwd=context_dir,
            # A launcher: `bentoml build` inherits this environment, with its home and no tracking.
            env={**os.environ, "BENTOML_HOME": self.bentoml_home, "BENTOML_DO_NOT_TRACK": "true"},
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if built.returncode != 0:
            raise RuntimeError(f"bentoml build failed:\n{built.stderr[-4000:]}")
        return built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")

    def release(self, name: str, bento_tag: str, model_version: str, share: float) -> Release:
        return Release(
            name=name,
            bento_tag=bento_tag,
            model_version=model_version,
            command=self.command(bento_tag),
            environment={
                **self.environment,
                "BENTOML_HOME": self.bentoml_home,
                "BENTOML_DO_NOT_TRACK": "true",
                "SERVING_TOKEN": self.token,
                "CANARY_SHARE": repr(share),
            },
        )

    def command(self, bento_tag: str) -> tuple[str, ...]:
        """What serves a Bento here: ``bentoml serve`` in this interpreter's environment."""
        return bentoml_command(bento_tag)

    def target(self, port: int) -> DeployTarget:
        return LocalTarget(Path(self.state_dir), port, host=self.host)
