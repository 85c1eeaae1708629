"""Embedded defaults: a PostgreSQL server from a wheel and the Temporal dev server from a wheel."""
