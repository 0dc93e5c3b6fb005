"""The feature engine: views as code, the point-in-time offline store, the online store."""
