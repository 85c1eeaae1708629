"""Helpers shared by the tests: fixed calendars, bounded waits, CLI runners, databases."""
