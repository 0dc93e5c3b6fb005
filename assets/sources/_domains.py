"""Value domains shared by the reference use case's source tables (and its data generator)."""

COUNTRIES = (
    "DE",
    "FR",
    "NL",
    "ES",
    "IT",
    "BE",
    "AT",
    "PL",
    "SE",
    "IE",
    "PT",
    "US",
    "GB",
    "NG",
    "BR",
)
MIN_AMOUNT = 0.01
"""One cent: a smaller positive amount (1e-320) is no payment, it is a broken number."""
MAX_AMOUNT = 50_000.0
"""Largest plausible single card payment in EUR; anything above is a data error."""
