"""Source tables: one file each, a ``SourceTable`` that arrives as landing files every day."""
