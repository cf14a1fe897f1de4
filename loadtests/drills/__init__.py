"""Drills against a running system: `python -m loadtests.drills.NAME --help`."""
