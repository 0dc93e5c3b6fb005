"""Approve a model version: ``python -m jobs.promote <model> <version> --reason TEXT``.

Moves the ``champion`` alias to the version if the approver is named in ``MODEL_APPROVERS`` and
the version passed its gates, and records the move in the audit table. Exits 2 when refused.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from resources.audit import registry_audit
from resources.lakehouse import Lakehouse
from resources.settings import Settings
from resources.tracking import MlflowTracking
from training.registry import CHAMPION, PromotionRefused

REFUSED = 2


def main(argv: list[str] | None = None) -> int:
    """Run the approval; the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m jobs.promote", description=f"Make a model version the {CHAMPION}."
    )
    parser.add_argument("model", help="registered model name")
    parser.add_argument("version", help="model version number")
    parser.add_argument(
        "--approver",
        default=getpass.getuser(),
        help="who approves (must be in MODEL_APPROVERS); defaults to the current user",
    )
    parser.add_argument("--reason", required=True, help="why, for the audit table")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    tracking = MlflowTracking(
        tracking_uri=settings.mlflow_tracking_uri, artifact_root=settings.mlflow_artifact_root
    )
    lakehouse = Lakehouse(root_uri=settings.lakehouse_uri, storage_options=settings.storage_options)
    registry = tracking.registry(registry_audit(lakehouse))
    try:
        change = registry.promote(
            args.model, args.version, args.approver, settings.model_approvers, args.reason
        )
    except PromotionRefused as refused:
        print(refused, file=sys.stderr)
        return REFUSED
    was = change.previous_version or "none"
    print(
        f"{change.model} version {change.version} is now {change.alias} (was {was}), "
        f"approved by {change.actor} at {change.at.isoformat()}Z"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
