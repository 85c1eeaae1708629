"""Everything ``dunning run`` needs, embedded where nothing is configured.

PostgreSQL: the configured URL, else the embedded server in ``<data_dir>/postgres``.
Temporal: the configured address (a cluster or Temporal Cloud), else the embedded dev server,
persisted in ``<data_dir>/temporal.db`` so that open workflows resume on the next start.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config.private_files import private_dir, private_file
from config.settings import Settings
from embedded.postgres import EmbeddedPostgres
from embedded.runlock import clear_pidfile, run_lock, stop_left_servers, write_pidfile
from embedded.temporal import (
    DEV_SERVER_STARTUP_TIMEOUT,
    EmbeddedServerError,
    dev_server_path,
    free_port,
)
from models.orm.database import make_engine, make_session_factory, migrate

log = logging.getLogger(__name__)


def database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The configured database, or the embedded one (started, or attached to if running)."""
    if settings.database.url is not None:
        return settings.database.url.get_secret_value(), None
    embedded = EmbeddedPostgres(Path(settings.data_dir) / "postgres")
    return embedded.start(), embedded


@dataclass
class Database:
    url: str
    engine: Engine
    session_factory: sessionmaker[Session]
    embedded: EmbeddedPostgres | None

    @classmethod
    def open(cls, settings: Settings, *, run_migrations: bool = False) -> Database:
        url, embedded = database_url(settings)
        if run_migrations:
            migrate(url)
        engine = make_engine(url, settings.database.pool_size, settings.database.echo)
        return cls(url, engine, make_session_factory(engine), embedded)

    def close(self) -> None:
        self.engine.dispose()


class Stack:
    """Database, migrations and Temporal for ``dunning run``; stops what it started."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db: Database | None = None
        self.client: Client | None = None
        self.ui_url = ""
        self.temporal_address = ""
        self._env: WorkflowEnvironment | None = None
        self._lock: contextlib.ExitStack | None = None

    async def __aenter__(self) -> Stack:
        settings = self.settings
        data_dir = Path(settings.data_dir).resolve()
        private_dir(data_dir)  # the databases, outbox and print batches hold patient data
        if not settings.temporal.address:
            # This run owns the data folder: one run at a time, and whatever a killed run left.
            self._lock = contextlib.ExitStack()
            self._lock.enter_context(run_lock(data_dir))
            stop_left_servers(data_dir, data_dir / "temporal.db")
        try:
            await self._start(settings, data_dir)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self, settings: Settings, data_dir: Path) -> None:
        self.db = Database.open(settings, run_migrations=True)
        if settings.temporal.address:
            from starter import connect

            self.client = await connect(settings)
            self.temporal_address = settings.temporal.address
        else:
            port = free_port(settings.temporal.dev_server_port)
            ui_port = free_port(settings.temporal.dev_server_ui_port)
            try:
                self._env = await WorkflowEnvironment.start_local(
                    dev_server_existing_path=dev_server_path(),
                    dev_server_database_filename=str(data_dir / "temporal.db"),
                    port=port,
                    ui=True,
                    ui_port=ui_port,
                    data_converter=pydantic_data_converter,
                    namespace=settings.temporal.namespace,
                    dev_server_log_level="error",
                    dev_server_startup_timeout=DEV_SERVER_STARTUP_TIMEOUT,
                )
            except RuntimeError as exc:
                stop_left_servers(data_dir, data_dir / "temporal.db")  # a slow one, half started
                raise EmbeddedServerError(
                    f"the embedded Temporal server did not start on port {port} within "
                    f"{DEV_SERVER_STARTUP_TIMEOUT.total_seconds():.0f} s ({exc})"
                ) from None
            self.client = self._env.client
            self.temporal_address = f"127.0.0.1:{port}"
            self.ui_url = f"http://127.0.0.1:{ui_port}"
            db_file = data_dir / "temporal.db"
            write_pidfile(data_dir, db_file, self.temporal_address)
            private_file(db_file)

    def write_runtime(self, api_url: str) -> None:
        """Tell the other ``dunning`` commands where this run's servers listen."""
        data = {
            "temporal_address": self.temporal_address,
            "ui_url": self.ui_url,
            "api_url": api_url,
        }
        path = Path(self.settings.runtime_file)
        path.write_text(json.dumps(data, indent=2))
        private_file(path)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        Path(self.settings.runtime_file).unlink(missing_ok=True)
        if self._env is not None:
            await self._env.shutdown()
            self._env = None
            clear_pidfile(Path(self.settings.data_dir).resolve())
        if self.db is not None:
            self.db.close()
            if self.db.embedded is not None:
                self.db.embedded.stop()
            self.db = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
