"""Gold tables: one file each, a ``DerivedTable`` joining silver tables into ML-ready rows."""
