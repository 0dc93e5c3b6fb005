"""Seeded synthetic card-payment data for the landing zone, with known fraud and known defects."""

from reference_data.generator import (
    BAD_RECORD_KINDS,
    FileSummary,
    GenerationSummary,
    GeneratorConfig,
    generate,
)

__all__ = ["BAD_RECORD_KINDS", "FileSummary", "GenerationSummary", "GeneratorConfig", "generate"]
