"""Monitors: one file each, a ``Monitor``: what of a deployment to watch, what drift sets off."""
