"""The one Definitions object: everything in assets/, jobs/ and sensors/ plus the resources.

A new module in any of those packages is picked up here without editing anything.
"""

import dagster as dg

import assets
import jobs
import sensors
from resources import Settings, build_resources


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_definitions_from_package_module(assets),
        dg.load_definitions_from_package_module(jobs),
        dg.load_definitions_from_package_module(sensors),
        dg.Definitions(resources=build_resources(settings)),
    )


defs = build_definitions()
