"""Engine and session factory. A session's lifetime belongs to the caller."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def make_engine(url: str, pool_size: int = 10, echo: bool = False) -> Engine:
    if not url.startswith("postgresql+psycopg://"):
        raise ValueError("database.url: only PostgreSQL through psycopg 3 (postgresql+psycopg://)")
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        echo=echo,
        # Statement parameters are patients' names, addresses and messages: keep them out of
        # exceptions and logs (they would reach Temporal's failure records).
        hide_parameters=True,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would read % in an escaped socket path as a placeholder.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision``."""
    command.upgrade(alembic_config(url), revision)
