"""Declarative base with a naming convention, so that migrations name constraints predictably."""

from __future__ import annotations

import datetime as dt
import functools
import os
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from sqlalchemy import DateTime, MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: DateTime(timezone=True)}

    def __init__(self, **kwargs: Any) -> None:
        # Scalar column defaults normally apply only at INSERT; apply them at construction so an
        # object built in memory (a charge line's balance, a guarantor's time zone) is complete.
        # A generated primary key too: an object knows its id before it is written, and the
        # ORM's batched INSERTs need not fetch ids back.
        cls = type(self)
        for key, make in _construction_defaults(cls):
            if key not in kwargs:
                kwargs[key] = make()
        for key, value in kwargs.items():
            if not hasattr(cls, key):
                raise TypeError(f"{key!r} is an invalid keyword argument for {cls.__name__}")
            setattr(self, key, value)


def _same(value: Any) -> Any:
    return value


_DEFAULTS: dict[type, list[tuple[str, Callable[[], Any]]]] = {}


def _construction_defaults(cls: type[Base]) -> list[tuple[str, Callable[[], Any]]]:
    """Per mapped class: each column's scalar default, and a primary key's generated one."""
    found = _DEFAULTS.get(cls)
    if found is None:
        found = []
        for column in cls.__table__.columns:
            default = column.default
            if default is None:
                continue
            arg: Any = default.arg
            if default.is_scalar:
                found.append((column.key, functools.partial(_same, arg)))
            elif column.primary_key and default.is_callable:
                # SQLAlchemy wraps a no-argument function as one taking the execution context.
                found.append((column.key, functools.partial(arg, None)))
        _DEFAULTS[cls] = found
    return found


_IDS: deque[uuid.UUID] = deque()
_IDS_PER_READ = 256


def new_id() -> uuid.UUID:
    """A random (version 4) UUID, as ``uuid.uuid4()``, its randomness read for 256 ids at a time.

    ``uuid4`` reads ``os.urandom`` once per id: a system call that gives up the GIL, and a
    thread of the worker that asks for it back waits behind the event loop (a send batch's ids
    took a tenth of its time, measured under load). Thread-safe: ``deque`` operations are atomic;
    a forked child starts with none of the parent's ids.
    """
    try:
        return _IDS.popleft()
    except IndexError:
        data = os.urandom(16 * _IDS_PER_READ)
        _IDS.extend(uuid.UUID(bytes=data[i : i + 16], version=4) for i in range(0, len(data), 16))
        return _IDS.popleft()


os.register_at_fork(after_in_child=_IDS.clear)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Timestamped:
    # Set by the application as the row is written (the server's default is for rows written by
    # hand): an INSERT that had to fetch it back would need RETURNING, and an import's multi-row
    # INSERTs would become one large statement per batch, parsed afresh each time.
    created_at: Mapped[dt.datetime] = mapped_column(default=utc_now, server_default=func.now())
    # Nothing to fetch back after an INSERT (every server default has a Python default too,
    # which ``tests/test_models_db.py`` checks): the ORM's batches are plain ``executemany``s,
    # which psycopg pipelines as one prepared statement.
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": False}
