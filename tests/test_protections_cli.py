"""``dunning protections``: the CLI front door of the privacy requests and flags (issue 18).

Run as a subprocess against the test database; no Temporal server runs, so the ledger's record is
the whole answer (a running workflow would be told through the same service).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from models.imports import BalanceRow
from models.orm import AuditEvent, ChannelRestriction, Consent
from models.orm import repositories as repo
from starter import Intake
from tests.factories import balance_row
from tests.identities import signed_in
from tests.support.cli import run_dunning


async def test_restrict_consent_and_flags_from_the_command_line(
    settings: Settings, session_factory: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    row = BalanceRow.model_validate(balance_row(good_faith_estimate="10.00", charges="900.00"))
    with session_factory.begin() as session:
        Intake(session_factory, None, settings).post_account(session, row.account_number, [row])
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DUNNING_TEMPORAL", "DUNNING_TOKEN", "DUNNING_LOGIN"))
    }
    env |= {
        "DUNNING_DATABASE__URL": database_url,
        "DUNNING_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
    }
    code, out = await run_dunning(
        env, "protections", "restrict", row.account_number, "--kind", "mail_only"
    )
    assert code == 6 and "not logged in" in out  # who acts is never anonymous
    token, clerk = signed_in(session_factory, "staff")
    env |= {"DUNNING_TOKEN": token}
    number = row.account_number
    code, out = await run_dunning(env, "protections", "restrict", number, "--kind", "mail_only")
    assert code == 0, out
    assert "mail_only recorded; 3 channel(s) changed" in out
    code, out = await run_dunning(
        env,
        "protections",
        "consent",
        number,
        "--channel",
        "sms",
        "--purpose",
        "appointment_reminders",
        "--source",
        "intake form",
    )
    assert code == 0, out
    code, out = await run_dunning(env, "protections", "flags", number)
    assert code == 0 and "nsa_dispute_eligible" in out, out
    code, out = await run_dunning(env, "protections", "restrict", "NOPE-1", "--kind", "no_calls")
    assert code == 1 and "account: no account 'NOPE-1'" in out and "Traceback" not in out
    with session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        restrictions = session.scalars(
            select(ChannelRestriction.kind).where(
                ChannelRestriction.guarantor_id == account.guarantor_id
            )
        ).all()
        purposes = session.scalars(
            select(Consent.purpose).where(Consent.guarantor_id == account.guarantor_id)
        ).all()
        audit = session.scalars(
            select(AuditEvent.actor).where(
                AuditEvent.account_id == account.id, AuditEvent.action == "channel_restricted"
            )
        ).all()
    assert restrictions == ["mail_only"]
    assert sorted(purposes) == ["appointment_reminders", "billing"]  # billing: the import's
    assert audit == [clerk]


async def test_no_calls_at_work_and_the_phone_kind_from_the_command_line(
    settings: Settings, session_factory: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    """Before: "no calls at work" changed no channel; there was no way to say a number is a work
    number. Now an unknown number is read as work (calls and texts stop) until staff say it is
    the patient's mobile."""
    row = BalanceRow.model_validate(balance_row())
    with session_factory.begin() as session:
        Intake(session_factory, None, settings).post_account(session, row.account_number, [row])
    token, clerk = signed_in(session_factory, "staff")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DUNNING_TEMPORAL", "DUNNING_TOKEN", "DUNNING_LOGIN"))
    } | {
        "DUNNING_DATABASE__URL": database_url,
        "DUNNING_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
        "DUNNING_TOKEN": token,
    }
    number = row.account_number
    code, out = await run_dunning(
        env, "protections", "restrict", number, "--kind", "no_calls_at_work"
    )
    assert code == 0 and "no_calls_at_work recorded; 2 channel(s) changed" in out, out
    code, out = await run_dunning(env, "protections", "phone-kind", number, "--kind", "pager")
    assert code == 1 and "kind: expected one of mobile, home or work" in out
    assert "Traceback" not in out
    code, out = await run_dunning(env, "protections", "phone-kind", number, "--kind", "Cell")
    assert code == 0 and "phone kind mobile recorded; 2 channel(s) changed" in out, out
    with session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        actions = session.scalars(
            select(AuditEvent.action).where(
                AuditEvent.account_id == account.id, AuditEvent.actor == clerk
            )
        ).all()
    assert {"channel_restricted", "phone_kind_recorded"} <= set(actions)
