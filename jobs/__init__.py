"""Asset jobs and schedules. Every module here is loaded by definitions.py."""
