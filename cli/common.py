"""What every command needs: settings, the database, a Temporal client, and clear errors."""

from __future__ import annotations

import asyncio
import os
import stat
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

import typer
from rich.console import Console

from config.roles import Permission
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


TOKEN_ENV = "DUNNING_TOKEN"
LOGIN_FILE_ENV = "DUNNING_LOGIN_FILE"
NOT_LOGGED_IN = 6
"""Exit code when nobody is logged in, the login is no longer valid, or its roles do not allow
the command."""


def login_file(cfg: Settings) -> Path:
    """Where ``dunning login`` keeps the token: ``DUNNING_LOGIN_FILE``, or ``login.token`` in the
    data folder (whoever may read that folder may read the embedded database anyway)."""
    override = os.environ.get(LOGIN_FILE_ENV, "").strip()
    return Path(override) if override else Path(cfg.data_dir) / "login.token"


def write_login(path: Path, token: str) -> None:
    """Keep ``token`` in ``path``, readable and writable by its owner only (0600), from the first
    byte: the file is created with that mode, never widened, and replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


def read_login(cfg: Settings) -> tuple[str, str] | None:
    """The token the CLI acts with and where it came from: ``DUNNING_TOKEN``, else the login
    file; None when there is neither. A login file others may read is refused, like ssh does."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token, TOKEN_ENV
    path = login_file(cfg)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        fail(
            f"login: {path} may be read by others (mode {stat.S_IMODE(mode):o}); "
            "run `dunning logout` and `dunning login` again",
            code=NOT_LOGGED_IN,
        )
    text = path.read_text(encoding="ascii", errors="replace").strip()
    return (text, str(path)) if text else None


def current_actor(permission: Permission | None = None) -> Actor:
    """Who runs this command: the user of the token from ``dunning login`` (or ``DUNNING_TOKEN``),
    resolved against the database; never a name typed on the command line.

    Exits with code 2 and a clear message when nobody is logged in, when the token is revoked or
    its user disabled, or (given ``permission``) when the user's roles do not grant it.
    """
    from services.identity import ActorKind, permissions
    from services.users import resolve_token

    cfg = settings()
    found = read_login(cfg)
    if found is None:
        fail(
            f"not logged in: run `dunning login` with the token your administrator gave you "
            f"(or set {TOKEN_ENV})",
            code=NOT_LOGGED_IN,
        )
    token, source = found
    with database(cfg) as db, db.session_factory() as session:
        resolved = resolve_token(session, token)
    if resolved is None:
        fail(
            f"login: the token from {source} is not valid (revoked, or its user disabled); "
            "run `dunning login` again",
            code=NOT_LOGGED_IN,
        )
    actor = resolved[1]
    if actor.kind is not ActorKind.USER:
        fail(
            f"login: the token from {source} is an integration's; staff commands need a user's",
            code=NOT_LOGGED_IN,
        )
    if permission is not None and permission not in permissions(actor):
        held = ", ".join(sorted(actor.roles)) or "no role"
        fail(
            f"{actor.name} ({held}) may not do this: it needs the {permission.value} permission",
            code=NOT_LOGGED_IN,
        )
    return actor


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
        Rejection.MESSAGE_UNKNOWN,
        Rejection.UNKNOWN_TASK,
        Rejection.NO_WORKFLOW,
        Rejection.NOT_A_CALL_TASK,
        Rejection.EXPERIMENT_UNKNOWN,
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
