"""People: ``dunning user add|list|disable|token``, and ``dunning login|logout|whoami``.

How a person proves who they are on one machine: an administrator (a user whose role has the
``admin`` permission) runs ``dunning user add NAME --role R``, which prints that user's login token
once, and hands it over; the person runs ``dunning login`` and pastes it (or pipes it in). The CLI
keeps it in a 0600 file and from then on acts as that user, with that user's roles. Until the
first administrator exists anyone at the machine may add users (the database is theirs).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from cli.common import (
    NOT_LOGGED_IN,
    console,
    current_actor,
    database,
    fail,
    login_file,
    settings,
    write_login,
)
from config.roles import Permission, RolesFileError
from services.identity import Actor, ActorKind, permissions

user_app = typer.Typer(
    help="Staff users and their roles (config/roles.yaml).", no_args_is_help=True
)

BOOTSTRAP = Actor(id="bootstrap", name="bootstrap", kind=ActorKind.SYSTEM)
"""Who adds users before any administrator exists: whoever holds the database."""


def register(app: typer.Typer) -> None:
    """Add ``user``, ``login``, ``logout`` and ``whoami`` to the ``dunning`` application."""
    app.add_typer(user_app, name="user")
    app.command(name="login")(login)
    app.command(name="logout")(logout)
    app.command(name="whoami")(whoami)


def administrator() -> Actor:
    """The logged-in administrator; before the first one exists, the machine's holder."""
    from services.users import admins_exist

    cfg = settings()
    with database(cfg) as db, db.session_factory() as session:
        try:
            bootstrap = not admins_exist(session)
        except RolesFileError as exc:
            fail(str(exc))
    return BOOTSTRAP if bootstrap else current_actor(Permission.ADMIN)


@user_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="login name: letters, digits and . _ @ -")],
    role: Annotated[list[str], typer.Option(help="a role of config/roles.yaml; repeatable")],
) -> None:
    """Add a user with one or more roles; print their login token and console password once."""
    from services.console_auth import set_password
    from services.users import IdentityError, add_user, issue_token

    by = administrator()
    cfg = settings()
    with database(cfg) as db, db.session_factory.begin() as session:
        try:
            user = add_user(session, name, role, by)
            token, _ = issue_token(session, by, user=user.name)
            password = set_password(session, user.name, by)
        except (IdentityError, RolesFileError) as exc:
            fail(str(exc))
    console.print(
        f"user {name} ({', '.join(role)}) added. Their console password (/console), shown once:",
        highlight=False,
    )
    print(password)
    # The token stays the last line: `dunning user add NAME --role R | tail -1 | dunning login`.
    console.print(
        "Their login token, shown once: give it to them and have them run `dunning login`:",
        highlight=False,
    )
    print(token)


@user_app.command("password")
def password(name: Annotated[str, typer.Argument(help="the user")]) -> None:
    """Set a new one-time console password for a user (also lifts a lock-out); printed once."""
    from services.console_auth import set_password
    from services.users import IdentityError

    by = administrator()
    cfg = settings()
    with database(cfg) as db, db.session_factory.begin() as session:
        try:
            secret = set_password(session, name, by)
        except IdentityError as exc:
            fail(str(exc))
    console.print(f"console password for {name}, shown once:", highlight=False)
    print(secret)


@user_app.command("token")
def token(name: Annotated[str, typer.Argument(help="the user")]) -> None:
    """Issue another login token for a user (a lost one: revoke it with `dunning token revoke`)."""
    from services.users import IdentityError, issue_token

    by = administrator()
    cfg = settings()
    with database(cfg) as db, db.session_factory.begin() as session:
        try:
            secret, row = issue_token(session, by, user=name)
        except IdentityError as exc:
            fail(str(exc))
        token_name = row.name
    console.print(f"token {token_name} for {name}; shown once:", highlight=False)
    print(secret)


@user_app.command("list")
def list_cmd() -> None:
    """Users, their roles, and whether they are active."""
    from services.users import list_users

    cfg = settings()
    with database(cfg) as db, db.session_factory() as session:
        users = list_users(session)
        table = Table("name", "id", "roles", "active", "created", "disabled")
        for user in users:
            table.add_row(
                user.name,
                str(user.id),
                ", ".join(user.roles),
                "yes" if user.active else "no",
                user.created_at.isoformat(timespec="minutes"),
                user.disabled_at.isoformat(timespec="minutes") if user.disabled_at else "-",
            )
    console.print(table)
    if not users:
        console.print("no users yet: `dunning user add NAME --role ROLE`")


@user_app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="the user")]) -> None:
    """Disable a user at once: every token of theirs stops working; the name is never reused."""
    from services.users import IdentityError, disable_user

    by = administrator()
    cfg = settings()
    with database(cfg) as db, db.session_factory.begin() as session:
        try:
            disable_user(session, name, by)
        except IdentityError as exc:
            fail(str(exc))
    console.print(f"disabled {name}")


def login(
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="read the token from standard input")
    ] = False,
) -> None:
    """Log in with the token from `dunning user add` (or `user token`); kept in a 0600 file."""
    from services.users import resolve_token

    if token_stdin or not sys.stdin.isatty():
        secret = sys.stdin.readline().strip()
    else:
        secret = typer.prompt("token", hide_input=True).strip()
    if not secret:
        fail("token: empty", code=NOT_LOGGED_IN)
    cfg = settings()
    with database(cfg) as db, db.session_factory() as session:
        resolved = resolve_token(session, secret)
    if resolved is None:
        fail("token: not valid (unknown, revoked, or its user disabled)", code=NOT_LOGGED_IN)
    actor = resolved[1]
    if actor.kind is not ActorKind.USER:
        fail("token: an integration's token; log in with a user's", code=NOT_LOGGED_IN)
    path = login_file(cfg)
    write_login(path, secret)
    console.print(
        f"logged in as {actor.name} ({', '.join(sorted(actor.roles))}); token kept in {path}",
        highlight=False,
    )


def logout(
    revoke: Annotated[bool, typer.Option(help="also revoke the token itself")] = False,
) -> None:
    """Forget the login (the file); with --revoke the token stops working everywhere."""
    from services.users import resolve_token, revoke_token

    cfg = settings()
    path = login_file(cfg)
    if revoke and path.exists():
        # The file's token, not DUNNING_TOKEN: logging out is about this login.
        secret = path.read_text(encoding="ascii", errors="replace").strip()
        with database(cfg) as db, db.session_factory.begin() as session:
            resolved = resolve_token(session, secret)
            if resolved is not None:
                revoke_token(session, resolved[0].name, resolved[1])
    if path.exists():
        path.unlink()
        console.print(f"logged out ({path} removed)", highlight=False)
    else:
        console.print("not logged in")


def whoami() -> None:
    """Who the CLI acts as: name, id, roles and what they may do."""
    actor = current_actor()
    granted = sorted(p.value for p in permissions(actor))
    console.print(
        f"{actor.name} (id {actor.id})\nroles: {', '.join(sorted(actor.roles))}\n"
        f"may: {', '.join(granted)}",
        highlight=False,
    )
