"""Financial assistance to the end and privacy requests in the ledger (issue 18, items 5 and 6).

Before: a 100% hardship after a $100 payment wrote off the rest and created no refund; there was no
missing-information notice, no consent by purpose, no channel restriction command and no
confidential address.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from models.actions import ChannelEventKind
from models.imports import BalanceRow
from models.orm import (
    Account,
    AccountStatus,
    AuditEvent,
    ChannelPreference,
    Communication,
    Guarantor,
    ProtectionFlag,
)
from models.orm import repositories as repo
from models.orm.protections import ConsentPurpose, FlagKind, RestrictionKind
from models.policy import Channel
from services import protections
from services.identity import Actor
from starter import Intake
from tests.factories import balance_row
from workflows.decisions import channel_block

CLERK = Actor(id="clerk-1", name="Clerk One", roles=frozenset({"staff"}))


def _account(settings: Settings, session: Session, **overrides: str) -> tuple[Account, Guarantor]:
    intake = Intake(sessionmaker(bind=session.get_bind()), None, settings)
    row = BalanceRow.model_validate(
        balance_row(charges="300.00", insurance_paid="0", insurance_adjustment="0", **overrides)
    )
    intake.post_account(session, row.account_number, [row])
    session.flush()
    account = repo.account_by_number(session, row.account_number)
    assert account is not None
    guarantor = session.get(Guarantor, account.guarantor_id)
    assert guarantor is not None
    return account, guarantor


def _pay(session: Session, account: Account, cents: int) -> None:
    repo.record_payment(
        session,
        account,
        f"P-{account.account_number}-{cents}",
        cents,
        dt.datetime.now(dt.UTC),
        "card",
        "clerk-1",
    )
    session.flush()


def _flags(session: Session, account: Account) -> dict[str, ProtectionFlag]:
    rows = session.scalars(select(ProtectionFlag).where(ProtectionFlag.account_id == account.id))
    return {f.kind: f for f in rows}


def test_full_assistance_after_a_100_dollar_payment_refunds_it(
    settings: Settings, db_session: Session
) -> None:
    account, _ = _account(settings, db_session)
    _pay(db_session, account, 10000)
    assert account.balance_cents == 20000
    outcome = protections.approve_assistance_in_ledger(
        db_session, CLERK, account, 100, "charity-care"
    )
    assert (outcome.responsibility_cents, outcome.refund_cents) == (0, 10000)
    assert outcome.write_off_cents == 20000 and outcome.balance_cents == 0
    refund = _flags(db_session, account)[FlagKind.REFUND_DUE.value]
    assert refund.amount_cents == 10000
    audit = db_session.scalars(
        select(AuditEvent).where(
            AuditEvent.account_id == account.id,
            AuditEvent.action == "financial_assistance_approved",
        )
    ).one()
    assert audit.actor == "clerk-1" and audit.detail["refund_cents"] == 10000


@pytest.mark.parametrize(
    ("paid", "percent", "refund", "write_off"),
    [(10000, 50, 0, 15000), (15400, 50, 0, 14600), (15500, 50, 500, 14500)],
    ids=["owes-the-rest", "under-5-dollars-no-refund", "5-dollars-refunded"],
)
def test_refund_only_from_5_dollars(
    settings: Settings, db_session: Session, paid: int, percent: int, refund: int, write_off: int
) -> None:
    account, _ = _account(settings, db_session)
    _pay(db_session, account, paid)
    outcome = protections.approve_assistance_in_ledger(db_session, CLERK, account, percent, "fa")
    assert (outcome.refund_cents, outcome.write_off_cents) == (refund, write_off)
    assert (FlagKind.REFUND_DUE.value in _flags(db_session, account)) is bool(refund)


def test_assistance_for_a_placed_account_opens_a_recall_task(
    settings: Settings, db_session: Session
) -> None:
    account, _ = _account(settings, db_session)
    account.status = AccountStatus.PLACED
    outcome = protections.approve_assistance_in_ledger(db_session, CLERK, account, 100, "fa")
    assert outcome.recall
    assert FlagKind.AGENCY_RECALL.value in _flags(db_session, account)


def test_missing_information_letter_with_its_deadline(
    settings: Settings, db_session: Session
) -> None:
    account, _ = _account(settings, db_session)
    deadline = dt.date.today() + dt.timedelta(days=30)
    row = protections.missing_information_notice(
        db_session,
        CLERK,
        account,
        ["proof of income"],
        deadline,
        "0" * 64,
        "Example Clinic",
        "(555) 010-0199",
    )
    again = protections.missing_information_notice(
        db_session,
        CLERK,
        account,
        ["proof of income"],
        deadline,
        "0" * 64,
        "Example Clinic",
        "(555) 010-0199",
    )
    assert again.id == row.id  # once per deadline
    letters = db_session.scalars(
        select(Communication).where(Communication.account_id == account.id)
    ).all()
    assert [c.channel for c in letters] == [Channel.LETTER]
    assert letters[0].body is not None and "- proof of income" in letters[0].body
    assert f"by {deadline.isoformat()}" in letters[0].body
    assert "no extraordinary collection action" in letters[0].body
    assert _flags(db_session, account)[FlagKind.FA_INFO_MISSING.value].due_on == deadline


def _pref(session: Session, guarantor: Guarantor, channel: Channel) -> ChannelPreference | None:
    return session.scalars(
        select(ChannelPreference).where(
            ChannelPreference.guarantor_id == guarantor.id, ChannelPreference.channel == channel
        )
    ).one_or_none()


def test_appointment_reminder_consent_is_not_billing_consent(
    settings: Settings, db_session: Session
) -> None:
    account, guarantor = _account(settings, db_session, sms_consent="no")
    change = protections.record_consent(
        db_session,
        CLERK,
        account.account_number,
        Channel.SMS,
        ConsentPurpose.APPOINTMENT_REMINDERS,
        "intake form 2026-11",
    )
    assert change.events == []  # nothing for the workflow: billing texts stay off
    assert not protections.has_billing_consent(db_session, guarantor, Channel.SMS)
    pref = _pref(db_session, guarantor, Channel.SMS)
    assert pref is None or not pref.consent
    change = protections.record_consent(
        db_session, CLERK, account.account_number, Channel.SMS, ConsentPurpose.BILLING, "call"
    )
    assert [e.kind for e in change.events] == [ChannelEventKind.CONSENT_GIVEN]
    assert protections.has_billing_consent(db_session, guarantor, Channel.SMS)
    pref = _pref(db_session, guarantor, Channel.SMS)
    assert pref is not None and pref.consent
    with pytest.raises(ValueError, match="source"):
        protections.record_consent(
            db_session, CLERK, account.account_number, Channel.SMS, ConsentPurpose.BILLING, " "
        )


def test_an_imported_sms_consent_is_recorded_as_billing_consent(
    settings: Settings, db_session: Session
) -> None:
    _, with_consent = _account(settings, db_session, sms_consent="yes")
    _, without = _account(settings, db_session, sms_consent="no")
    [consent] = protections.consents(db_session, with_consent)
    assert (consent.purpose, consent.source) == ("billing", "import: sms_consent column")
    assert protections.consents(db_session, without) == []


def test_mail_only_blocks_email_text_and_calls_and_new_workflows_start_with_it(
    settings: Settings, db_session: Session
) -> None:
    account, guarantor = _account(settings, db_session)
    change = protections.restrict_channels(
        db_session, CLERK, account.account_number, RestrictionKind.MAIL_ONLY
    )
    assert {(e.kind, e.channel) for e in change.events} == {
        (ChannelEventKind.RESTRICTED, Channel.EMAIL),
        (ChannelEventKind.RESTRICTED, Channel.SMS),
        (ChannelEventKind.RESTRICTED, Channel.CALL),
    }
    email = _pref(db_session, guarantor, Channel.EMAIL)
    assert email is not None and email.restricted_at is not None  # refused at send time too
    profile = protections.apply_requests_to_profile(
        db_session, guarantor, account, repo.contact_profile(guarantor)
    )
    policy = protections.policy_of(db_session, account).policy
    assert channel_block(policy, Channel.LETTER, profile) == ""
    assert all(
        channel_block(policy, c, profile) for c in (Channel.EMAIL, Channel.SMS, Channel.CALL)
    )
    lifted = protections.lift_restriction(
        db_session, CLERK, account.account_number, RestrictionKind.MAIL_ONLY
    )
    assert {e.kind for e in lifted.events} == {ChannelEventKind.RESTRICTION_LIFTED}
    actions = db_session.scalars(
        select(AuditEvent.action).where(AuditEvent.account_id == account.id)
    ).all()
    assert "channel_restricted" in actions and "channel_restriction_lifted" in actions


def test_confidential_address_gets_the_letters_and_nothing_else(
    settings: Settings, db_session: Session
) -> None:
    account, guarantor = _account(settings, db_session)
    change = protections.set_confidential_address(
        db_session,
        CLERK,
        account.account_number,
        protections.AddressIn("PO Box 77", "Safe Harbor", "MN", "55401"),
    )
    assert {e.channel for e in change.events} == {Channel.EMAIL, Channel.SMS, Channel.CALL}
    assert protections.confidential_address_lines(guarantor) == [
        "PO Box 77",
        "Safe Harbor, MN 55401",
    ]
    assert protections.mailing_address(db_session, guarantor)[0] == "PO Box 77"
    # The guarantor's own address is kept, not overwritten.
    assert guarantor.address_line1 == "1 Example Way"


def test_unknown_account_is_a_clear_error(db_session: Session) -> None:
    with pytest.raises(LookupError, match="account: no account 'NOPE-1'"):
        protections.restrict_channels(db_session, CLERK, "NOPE-1", RestrictionKind.NO_CALLS)
