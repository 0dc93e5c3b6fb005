"""Sensors. Every module here is loaded by definitions.py."""
