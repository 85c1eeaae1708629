"""The policies as the console lists them: files with their check, stored versions, and which
version each open balance follows, from the ledger (PostgreSQL, no Temporal)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from config.loader import load_policy
from config.settings import Settings
from models.orm import Account, AccountStatus, Communication
from models.policy import Channel
from services import audit, policy_library
from services.audit import Outcome
from services.errors import Refused
from services.identity import SYSTEM
from tests.factories import INSTANT_POLICY
from tests.fakes.accounts import make_account

ZONE = "America/Chicago"


def _policy_file(directory: Path, name: str, statement_2_day: int) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.yaml"
    text = INSTANT_POLICY.format(tz=ZONE).replace("name: instant", f"name: {name}")
    path.write_text(text.replace("day: 30,", f"day: {statement_2_day},"), encoding="utf-8")
    return path


def _number(session_factory: sessionmaker[Session], account_id: str) -> str:
    with session_factory() as s:
        account = s.get(Account, uuid.UUID(account_id))
        assert account is not None
        return account.account_number


def test_each_open_balance_counts_on_the_version_it_follows(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Started on v1, started on v2, moved to v2 (audited migration), a message sent on a version,
    and a closed balance (not counted): the counts per version and the pinned lists agree."""
    name = f"lib-{uuid.uuid4().hex[:6]}"
    path = _policy_file(tmp_path / "policies", name, 30)
    settings.practice.policy_dirs.append(path.parent)
    v1 = load_policy(path)
    first = make_account(session_factory, v1)
    moved = make_account(session_factory, v1)
    closed = make_account(session_factory, v1)
    _policy_file(path.parent, name, 45)  # the lead edits the file
    v2 = load_policy(path)
    assert v2.hash != v1.hash
    second = make_account(session_factory, v2)
    with session_factory.begin() as s:
        account = s.get(Account, uuid.UUID(closed))
        assert account is not None
        account.status = AccountStatus.PAID
        audit.record(
            s,
            SYSTEM,
            "policy_migrated",
            uuid.UUID(moved),
            Outcome.DONE,
            {"to": f"{name}@{v2.hash}"},
        )
        audit.record(  # a refused migration moves nothing
            s, SYSTEM, "policy_migrated", uuid.UUID(first), Outcome.REFUSED, {"to": f"{name}@x"}
        )
        # A message the workflow sent on v1 (before any migration of this account).
        s.add(
            Communication(
                idempotency_key=f"lib/{first}/statement-1",
                account_id=uuid.UUID(first),
                step_id="statement-1",
                policy_hash=v1.hash,
                channel=Channel.LETTER,
                template="statement",
            )
        )
    with session_factory() as s:
        found = policy_library.summary(s, settings, name)
        listed = {p.name: p for p in policy_library.summaries(s, settings)}
        on_v1 = policy_library.pinned_accounts(s, name, v1.hash)
        on_v2 = policy_library.pinned_accounts(s, name, v2.hash)
    counts = {v.hash: v.accounts for v in found.versions}
    assert counts == {v1.hash: 1, v2.hash: 2}
    assert [v.current for v in found.versions] == [True, False]  # newest first: the file's
    assert found.check is not None and found.check.ok and found.pinned == 3
    assert listed[name].pinned == 3
    assert [a.number for a in on_v1] == [_number(session_factory, first)]
    assert on_v1[0].since is not None  # seen on it by its message
    numbers = sorted(_number(session_factory, a) for a in (moved, second))
    assert [a.number for a in on_v2] == numbers
    with session_factory() as s:
        assert policy_library.bundle(s, settings, name).hash == v2.hash  # the file
        assert policy_library.bundle(s, settings, name, v1.hash[:8]).hash == v1.hash  # stored


def test_unknown_names_versions_and_a_broken_file_are_named(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    name = f"lib-{uuid.uuid4().hex[:6]}"
    path = _policy_file(tmp_path / "policies", name, 30)
    settings.practice.policy_dirs.append(path.parent)
    with session_factory() as s:
        with pytest.raises(Refused, match="policy: no policy named 'no-such-policy'"):
            policy_library.summary(s, settings, "no-such-policy")
        with pytest.raises(Refused, match="version: 'zz' is not a version hash"):
            policy_library.bundle(s, settings, name, "zz")
        with pytest.raises(Refused, match=f"version: no version abcdef0 of policy '{name}'"):
            policy_library.bundle(s, settings, name, "abcdef0")
    path.write_text(
        path.read_text(encoding="utf-8").replace("day: 30,", "day: -3,"), encoding="utf-8"
    )
    check = policy_library.check_file(path)
    assert not check.ok and check.bundle is None
    assert any("steps.2.day" in e for e in check.errors), check.errors
    assert "day: -3" in check.text
    with session_factory() as s, pytest.raises(Refused, match="does not pass its check"):
        policy_library.bundle(s, settings, name)
