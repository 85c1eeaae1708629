"""A fresh PostgreSQL database built by the migrations, dropped after: the session's and any
test's that needs a database of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import make_url

from models.orm.database import migrate


@contextmanager
def migrated_database(base_url: str, prefix: str = "dunning_test") -> Iterator[str]:
    """Create a database next to ``base_url``'s, migrate it to head, yield its URL, drop it."""
    url = make_url(base_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        own = url.set(database=name).render_as_string(hide_password=False)
        migrate(own)
        yield own
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
