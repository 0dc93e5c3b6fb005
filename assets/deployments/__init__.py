"""Deployments: one file each, a ``Deployment`` (model, request, traffic, batching, runtime)."""
