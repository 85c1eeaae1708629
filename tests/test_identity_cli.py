"""People on the command line: users, login tokens kept in a 0600 file, whoami, logout, token
ownership; and the 0006 migration of the one-role tokens into users."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command as alembic
from sqlalchemy import make_url, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from cli.main import app
from models.orm import ApiToken, User
from models.orm.database import alembic_config, make_engine, make_session_factory, migrate
from services.identity import SYSTEM
from services.users import add_user, hash_token, issue_token, resolve_token

runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI against the test database, with its own data folder (where the login file goes)."""
    data = tmp_path / "data"
    monkeypatch.setenv("DUNNING_DATABASE__URL", database_url)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(data))
    monkeypatch.delenv("DUNNING_TOKEN", raising=False)
    monkeypatch.delenv("DUNNING_LOGIN_FILE", raising=False)
    return data


@pytest.fixture
def admin(session_factory: sessionmaker[Session]) -> str:
    """A logged-in administrator's token (a billing lead, made as `dunning user add` would)."""
    name = f"lead-{uuid.uuid4().hex[:6]}"
    with session_factory.begin() as session:
        add_user(session, name, ["billing_lead"], SYSTEM)
        return issue_token(session, SYSTEM, user=name)[0]


def _run(*args: str, token: str | None = None, stdin: str | None = None) -> tuple[int, str]:
    env = {"DUNNING_TOKEN": token} if token else None
    result = runner.invoke(app, list(args), input=stdin, env=env)
    return result.exit_code, result.output


def test_login_keeps_the_token_in_a_0600_file_and_whoami_is_that_user(
    cli_env: Path, admin: str
) -> None:
    name = f"clerk-{uuid.uuid4().hex[:6]}"
    code, out = _run("user", "add", name, "--role", "staff", "--role", "dentist", token=admin)
    assert code == 0, out
    token = out.strip().splitlines()[-1]
    assert token.startswith("dun_")

    code, out = _run("whoami")
    assert code == 6 and "not logged in" in out and "dunning login" in out
    code, out = _run("login", stdin="dun_not-a-real-token\n")
    assert code == 6 and "not valid" in out
    assert not (cli_env / "login.token").exists()

    code, out = _run("login", stdin=token + "\n")
    assert code == 0, out
    path = cli_env / "login.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == token
    code, out = _run("whoami")
    assert code == 0, out
    assert name in out and "dentist, staff" in out and "decide" in out

    # A login file others may read is refused, as ssh refuses such a key.
    path.chmod(0o644)
    code, out = _run("whoami")
    assert code == 6 and "may be read by others" in out
    path.chmod(0o600)

    # DUNNING_TOKEN wins over the file.
    code, out = _run("whoami", token=admin)
    assert code == 0 and "billing_lead" in out

    code, out = _run("logout", "--revoke")
    assert code == 0 and not path.exists()
    code, out = _run("whoami", token=token)
    assert code == 6 and "not valid" in out


def test_user_admin_needs_the_admin_permission_and_catalogue_roles(
    cli_env: Path, admin: str, session_factory: sessionmaker[Session]
) -> None:
    tag = uuid.uuid4().hex[:6]
    code, out = _run("user", "add", f"x-{tag}", "--role", "chief-of-everything", token=admin)
    assert code == 1 and "unknown role 'chief-of-everything'" in out
    code, out = _run("user", "add", f"bad name {tag}", "--role", "staff", token=admin)
    assert code == 1 and "name:" in out

    code, out = _run("user", "add", f"clerk-{tag}", "--role", "staff", token=admin)
    assert code == 0, out
    clerk = out.strip().splitlines()[-1]
    code, out = _run("user", "add", f"clerk-{tag}", "--role", "staff", token=admin)
    assert code == 1 and "already exists" in out
    # a clerk may not add users, issue or revoke tokens
    code, out = _run("user", "add", f"mine-{tag}", "--role", "billing_lead", token=clerk)
    assert code == 6 and "admin permission" in out
    code, out = _run("token", "create", "--user", f"clerk-{tag}", token=clerk)
    assert code == 6 and "admin permission" in out

    code, out = _run("user", "list", token=admin)
    assert code == 0 and f"clerk-{tag}" in out

    # another token for the same user acts as the same person
    code, out = _run("token", "create", "--user", f"clerk-{tag}", token=admin)
    assert code == 0, out
    second = out.strip().splitlines()[-1]
    with session_factory() as session:
        first_actor = resolve_token(session, clerk)
        second_actor = resolve_token(session, second)
        assert first_actor is not None and second_actor is not None
        assert first_actor[1].id == second_actor[1].id
        user = session.scalars(select(User).where(User.name == f"clerk-{tag}")).one()
        assert first_actor[1].id == str(user.id)

    # disabling the user stops every token of theirs at once
    code, out = _run("user", "disable", f"clerk-{tag}", token=admin)
    assert code == 0, out
    for token in (clerk, second):
        code, out = _run("whoami", token=token)
        assert code == 6 and "not valid" in out
    code, out = _run("user", "add", f"clerk-{tag}", "--role", "staff", token=admin)
    assert code == 1 and "already exists" in out


def test_integration_tokens_hold_no_staff_role(cli_env: Path, admin: str) -> None:
    name = f"pms-{uuid.uuid4().hex[:6]}"
    code, out = _run("token", "create", name, token=admin)
    assert code == 1 and "--user NAME or --integration" in out
    code, out = _run("token", "create", name, "--integration", token=admin)
    assert code == 0, out
    token = out.strip().splitlines()[-1]
    code, out = _run("login", stdin=token + "\n")
    assert code == 6 and "integration" in out
    code, out = _run("hold", "NO-SUCH-1", "--reason", "dispute", token=token)
    assert code == 6 and "integration" in out
    code, out = _run("token", "list", token=admin)
    assert code == 0 and name in out and "integration" in out


def test_staff_commands_have_no_typed_identity(cli_env: Path) -> None:
    for command in ("approve", "deny", "hold", "write-off", "refer", "settle"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert "--as" not in result.output and "--role" not in result.output, command
        assert "DUNNING_USER" not in result.output


@pytest.fixture
def fresh_url(database_url: str) -> Iterator[str]:
    url = make_url(database_url)
    name = f"dunning_mig_{uuid.uuid4().hex[:8]}"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migration_0006_turns_staff_tokens_into_users(fresh_url: str) -> None:
    migrate(fresh_url, "0005")
    plain = make_url(fresh_url).set(drivername="postgresql")
    with psycopg.connect(plain.render_as_string(hide_password=False)) as conn:
        for name, role in (("pms", "integration"), ("sam", "supervisor"), ("cleo", "staff")):
            conn.execute(
                "INSERT INTO api_tokens (id, name, role, token_hash) VALUES (%s, %s, %s, %s)",
                (uuid.uuid4(), name, role, hash_token(f"dun_{name}")),
            )
    migrate(fresh_url)
    engine = make_engine(fresh_url)
    try:
        with make_session_factory(engine)() as session:
            users = {u.name: u for u in session.scalars(select(User))}
            assert {n: u.roles for n, u in users.items()} == {
                "sam": ["supervisor"],
                "cleo": ["staff"],
            }
            owners = {t.name: t.user_id for t in session.scalars(select(ApiToken))}
            assert owners == {"pms": None, "sam": users["sam"].id, "cleo": users["cleo"].id}
            # the same token now acts for the user, with the role it had
            found = resolve_token(session, "dun_sam")
            assert found is not None
            assert found[1].id == str(users["sam"].id) and found[1].roles == {"supervisor"}
            found = resolve_token(session, "dun_pms")
            assert found is not None and found[1].kind.value == "integration"
    finally:
        engine.dispose()
    # and back: each token gets the closest of the old roles
    alembic.downgrade(alembic_config(fresh_url), "0005")
    with psycopg.connect(plain.render_as_string(hide_password=False)) as conn:
        rows: dict[str, str] = dict(
            conn.execute("SELECT name, role::text FROM api_tokens").fetchall()
        )
    assert rows == {"pms": "integration", "sam": "supervisor", "cleo": "staff"}


def test_the_first_administrator_closes_the_open_door(
    fresh_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(fresh_url)
    monkeypatch.setenv("DUNNING_DATABASE__URL", fresh_url)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DUNNING_TOKEN", raising=False)
    # No administrator yet: whoever holds the database adds users.
    code, out = _run("user", "add", "cleo", "--role", "staff")
    assert code == 0, out
    code, out = _run("user", "add", "lee", "--role", "billing_lead")
    assert code == 0, out
    lee = out.strip().splitlines()[-1]
    # From now on only an administrator may.
    code, out = _run("user", "add", "mallory", "--role", "billing_lead")
    assert code == 6 and "not logged in" in out
    code, out = _run("user", "add", "sam", "--role", "office-manager", token=lee)
    assert code == 0, out
    code, out = _run("user", "list", token=lee)
    assert code == 0 and all(name in out for name in ("cleo", "lee", "sam"))
    assert "mallory" not in out
