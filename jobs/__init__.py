"""Asset jobs and their schedules, built by definitions.py from the assets the factories made."""
