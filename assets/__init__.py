"""Declarations a data scientist edits: one plain object per file, no Dagster.

``sources/`` source tables, ``gold/`` derived tables, ``features/`` feature views, and the
entities features are keyed by. ``registry.discover()`` finds them all; ``factories/`` makes them
into Dagster assets. Adding a file here is all it takes to add one.
"""
