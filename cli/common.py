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
from services.context import Services
from services.errors import Refused
from services.identity import Actor
from workflows.contract import Rejection

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


# -- exit codes: one per family of refusal (documented in the README) ----------------------------

EXIT_OK = 0
EXIT_ERROR = 1
"""Anything else that went wrong (a bad file, a server error)."""
EXIT_INVALID = 2
"""Bad input: a malformed argument, or a request the rules call invalid."""
EXIT_NOT_FOUND = 3
"""No such account or task, or no workflow follows the balance (paid, closed, never started)."""
EXIT_REFUSED = 4
"""A rule refused the action (not an approver, four eyes, already decided, on hold, ...)."""
EXIT_UNREACHABLE = 5
"""Temporal (or ``dunning run``) is not reachable."""

_NOT_FOUND = frozenset(
    {
        Rejection.ACCOUNT_UNKNOWN,
        Rejection.TASK_UNKNOWN,
        Rejection.UNKNOWN_TASK,
        Rejection.NO_WORKFLOW,
        Rejection.NOT_A_CALL_TASK,
    }
)


def exit_code(kind: Rejection) -> int:
    if kind is Rejection.INVALID_REQUEST:
        return EXIT_INVALID
    if kind in _NOT_FOUND:
        return EXIT_NOT_FOUND
    if kind is Rejection.TEMPORAL_UNREACHABLE:
        return EXIT_UNREACHABLE
    return EXIT_REFUSED


def refused(exc: Refused) -> NoReturn:
    """Print a refusal as one clear line and leave with its exit code."""
    if exc.kind in (Rejection.INVALID_REQUEST, Rejection.TEMPORAL_UNREACHABLE) or (
        exc.kind in _NOT_FOUND
    ):
        fail(exc.message, exit_code(exc.kind))
    fail(f"refused ({exc.kind.value}): {exc.message}", exit_code(exc.kind))


def with_services(work: Callable[[Services], Awaitable[T]], *, temporal: bool = True) -> T:
    """Open the database (and Temporal, if ``temporal``), run a use case, render refusals."""
    from starter import NotRunning, connect

    cfg = settings()

    async def go() -> T:
        with database(cfg) as db:
            svc = Services(cfg, db.session_factory)
            if temporal:
                try:
                    svc.client = await connect(cfg)
                except NotRunning as exc:
                    svc.unreachable = str(exc)
                except RuntimeError as exc:
                    svc.unreachable = f"cannot reach Temporal: {exc}"
            try:
                return await work(svc)
            except Refused as exc:
                refused(exc)

    return asyncio.run(go())
