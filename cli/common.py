"""What every command needs: settings, the database, a Temporal client, and clear errors."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import typer
from rich.console import Console

from config.settings import Settings, load_settings
from embedded.stack import Database
from services.identity import Actor

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


def settings() -> Settings:
    return load_settings()


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def parse_id(field: str, value: str, hint: str = "") -> uuid.UUID:
    """An id given on the command line, or a clear error naming the argument."""
    try:
        return uuid.UUID(value)
    except ValueError:
        fail(f"{field}: {value!r} is not an id{hint}")


@contextmanager
def database(cfg: Settings) -> Iterator[Database]:
    db = Database.open(cfg)
    try:
        yield db
    finally:
        db.close()


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(factory())  # type: ignore[arg-type]


def current_actor() -> Actor:
    """Who runs this command.

    Interim: the staff id and role from ``DUNNING_USER`` and ``DUNNING_ROLE``. To be replaced by
    the authenticated user of ``dunning login`` (or ``DUNNING_TOKEN``), never a typed name.
    """
    name = os.environ.get("DUNNING_USER", "").strip()
    role = os.environ.get("DUNNING_ROLE", "").strip()
    if not name:
        fail("who are you? set DUNNING_USER (and DUNNING_ROLE)", code=2)
    return Actor(id=name, name=name, roles=frozenset({role} if role else ()))
