"""The secret behind PII pseudonyms; it only ever comes from the environment."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

MIN_KEY_LENGTH = 16
"""Shorter keys make pseudonyms guessable by brute force over known e-mails and card numbers."""


class Pseudonymizer(dg.ConfigurableResource):
    """Every step that reads raw PII needs it, so a bad key fails the step before any write."""

    key: str = Field(description="HMAC key for PII pseudonyms; set with dg.EnvVar.")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if not self.key.strip():
            raise dg.Failure("PSEUDONYMIZATION_KEY is empty: refusing to write any table.")
        if self.key != self.key.strip() or len(self.key) < MIN_KEY_LENGTH:
            raise dg.Failure(
                f"PSEUDONYMIZATION_KEY is malformed: it needs at least {MIN_KEY_LENGTH} "
                "characters and no surrounding whitespace; refusing to write any table."
            )

    @property
    def key_bytes(self) -> bytes:
        return self.key.encode()
