"""The Dagster side: what turns declarations and engines into assets, checks and metadata.

Engines (medallion/, feature_store/) know nothing of Dagster or of the declarations in assets/;
the code here wires them together: the daily calendar, how a table and a check read in the UI,
write-audit-publish, and the readiness of an asset's inputs.
"""
