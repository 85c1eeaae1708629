"""``dunning api`` serves the HTTP API alone; ``dunning token`` manages its bearer tokens."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from cli.common import console, database, fail, settings
from models.orm import ApiToken, User

token_app = typer.Typer(help="Bearer tokens of the HTTP API.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``api`` and ``token`` to the ``dunning`` application."""
    app.command(name="api")(api)
    app.add_typer(token_app, name="token")


def api(
    host: Annotated[str | None, typer.Option(help="default DUNNING_API__HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default DUNNING_API__PORT")] = None,
) -> None:
    """Serve the HTTP API alone, against the configured (or running) database and Temporal."""
    import uvicorn

    from api.app import create_app
    from starter import NotRunning, connect

    cfg = settings()

    async def go() -> None:
        with database(cfg) as db:
            try:
                client = await connect(cfg)
            except NotRunning as exc:
                fail(str(exc))
            except RuntimeError as exc:
                fail(f"cannot reach Temporal: {exc}")
            app = create_app(cfg, db.session_factory, client)
            bind_host, bind_port = host or cfg.api.host, port or cfg.api.port
            console.print(f"HTTP API on http://{bind_host}:{bind_port} (docs at /docs)")
            server = uvicorn.Server(
                uvicorn.Config(
                    app, host=bind_host, port=bind_port, log_level="warning", lifespan="off"
                )
            )
            await server.serve()

    asyncio.run(go())


@token_app.command("create")
def create(
    name: Annotated[
        str | None, typer.Argument(help="the token's name (default: the user's, and a suffix)")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="the user it acts for, with their roles")
    ] = None,
    integration: Annotated[
        bool, typer.Option("--integration", help="a billing system's: intake only, no staff role")
    ] = False,
) -> None:
    """Create a token for a user or an integration and print it once; only its hash is stored."""
    from cli.users import administrator
    from services.users import IdentityError, issue_token

    if (user is None) == (not integration):
        fail("token: give --user NAME or --integration (one of them)")
    if integration and name is None:
        fail("name: an integration's token needs a name")
    by = administrator()
    cfg = settings()
    with database(cfg) as db, db.session_factory.begin() as session:
        try:
            token, row = issue_token(session, by, user=user, name=name)
        except IdentityError as exc:
            fail(str(exc))
        token_name = row.name
    owner = f"user {user}" if user else "integration"
    console.print(f"token {token_name} ({owner}); shown once, keep it secret:", highlight=False)
    print(token)


@token_app.command("list")
def list_tokens() -> None:
    """Tokens by name and owner; never the tokens themselves."""
    cfg = settings()
    with database(cfg) as db, db.session_factory() as session:
        rows = session.execute(
            select(ApiToken, User.name)
            .outerjoin(User, User.id == ApiToken.user_id)
            .order_by(ApiToken.created_at)
        ).all()
    table = Table("name", "acts for", "created", "revoked")
    for row, owner in rows:
        table.add_row(
            row.name,
            f"user {owner}" if owner else "integration",
            row.created_at.isoformat(timespec="minutes"),
            row.revoked_at.isoformat(timespec="minutes") if row.revoked_at else "-",
        )
    console.print(table)


@token_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="the token's name")]) -> None:
    """Revoke a token at once."""
    from cli.users import administrator
    from services.users import revoke_token

    by = administrator()
    cfg = settings()
    with database(cfg) as db, db.session_factory.begin() as session:
        if not revoke_token(session, name, by):
            fail(f"token: no active token named {name!r}")
    console.print(f"revoked {name}")
