"""``dunning api`` serves the HTTP API alone; ``dunning token`` manages its bearer tokens."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from cli.common import console, database, fail, settings
from models.orm import ApiRole, ApiToken

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
    name: Annotated[str, typer.Argument(help="who uses it: a person's staff id or a system")],
    role: Annotated[ApiRole, typer.Option(help="what it may do")],
) -> None:
    """Create a token and print it once; only its hash is stored."""
    from api.auth import create_token

    cfg = settings()
    with database(cfg) as db, db.session_factory.begin() as session:
        try:
            token = create_token(session, name, role)
        except ValueError as exc:
            fail(str(exc))
    console.print(f"token for {name} ({role.value}); shown once, keep it secret:")
    print(token)


@token_app.command("list")
def list_tokens() -> None:
    """Tokens by name and role; never the tokens themselves."""
    cfg = settings()
    with database(cfg) as db, db.session_factory() as session:
        rows = session.scalars(select(ApiToken).order_by(ApiToken.created_at)).all()
    table = Table("name", "role", "created", "revoked")
    for row in rows:
        table.add_row(
            row.name,
            row.role.value,
            row.created_at.isoformat(timespec="minutes"),
            row.revoked_at.isoformat(timespec="minutes") if row.revoked_at else "-",
        )
    console.print(table)


@token_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="the token's name")]) -> None:
    """Revoke a token at once."""
    from api.auth import revoke_token

    cfg = settings()
    with database(cfg) as db, db.session_factory.begin() as session:
        if not revoke_token(session, name):
            fail(f"token: no active token named {name!r}")
    console.print(f"revoked {name}")
