"""Asset definitions, one module per layer. Every module here is loaded by definitions.py."""
