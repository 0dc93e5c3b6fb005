"""The secret behind PII pseudonyms; it only ever comes from the environment."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class Pseudonymizer(dg.ConfigurableResource):
    key: str = Field(description="HMAC key for PII pseudonyms; set with dg.EnvVar.")

    @property
    def key_bytes(self) -> bytes:
        return self.key.encode()
