"""Privacy requests that do what they say (issue 18, item 6, finished).

Before: "no calls at work" was recorded and blocked nothing, and lifting a restriction left the
opt-out it had written on texts and emails (and cleared a call opt-out the patient had asked for
themselves), because a restriction and an opt-out were the same column.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from models.actions import ChannelEventKind, ChannelEventSignal
from models.imports import BalanceRow
from models.orm import Account, Guarantor
from models.orm import repositories as repo
from models.orm.protections import RestrictionKind
from models.payloads import ChannelStatus, ContactProfile
from models.policy import Channel, Policy
from models.protections import PhoneKind
from services import protections
from services.identity import Actor
from starter import Intake, record_channel_event
from tests.factories import balance_row
from workflows import account_rules
from workflows.decisions import channel_block
from workflows.protections import restriction_blocks

CLERK = Actor(id="clerk-1", name="Clerk One", roles=frozenset({"staff"}))
PHONE = (Channel.CALL, Channel.SMS)


def _account(
    settings: Settings, session: Session, **overrides: str
) -> tuple[Account, Guarantor, Policy]:
    intake = Intake(sessionmaker(bind=session.get_bind()), None, settings)
    row = BalanceRow.model_validate(balance_row(**overrides))
    intake.post_account(session, row.account_number, [row])
    session.flush()
    account = repo.account_by_number(session, row.account_number)
    assert account is not None
    guarantor = protections._guarantor_of(session, account)
    return account, guarantor, protections.policy_of(session, account).policy


def _send_time(policy: Policy, guarantor: Guarantor, channel: Channel) -> str:
    """The send-time verdict: the ledger's channels now, judged by the decision core."""
    return channel_block(policy, channel, repo.contact_profile(guarantor))


def _plan_time(policy: Policy, events: list[ChannelEventSignal], channel: Channel) -> str:
    """The workflow's verdict after the signals the request sent (a consented, reachable phone)."""
    profile = ContactProfile(
        channels={c: ChannelStatus(reachable=True, consent=True) for c in Channel}
    )
    for event in events:
        account_rules.apply_channel_event(profile, event)
    return channel_block(policy, channel, profile)


def test_the_export_says_what_kind_of_number_it_is() -> None:
    assert BalanceRow.model_validate(balance_row(phone_kind="Cell")).phone_kind is PhoneKind.MOBILE
    assert BalanceRow.model_validate(balance_row(phone_kind="Work")).phone_kind is PhoneKind.WORK
    assert BalanceRow.model_validate(balance_row(phone_kind="")).phone_kind is PhoneKind.UNKNOWN
    with pytest.raises(ValidationError, match="phone_kind"):
        BalanceRow.model_validate(balance_row(phone_kind="pager"))


def test_the_rule_reads_an_unknown_number_as_a_work_number() -> None:
    at_work = RestrictionKind.NO_CALLS_AT_WORK
    assert restriction_blocks(at_work, PhoneKind.WORK) == frozenset(PHONE)
    assert restriction_blocks(at_work, PhoneKind.UNKNOWN) == frozenset(PHONE)
    assert restriction_blocks(at_work, PhoneKind.MOBILE) == frozenset()
    assert restriction_blocks(at_work, PhoneKind.HOME) == frozenset()


def test_no_calls_at_work_blocks_calls_and_texts_to_a_work_number(
    settings: Settings, db_session: Session
) -> None:
    account, guarantor, policy = _account(settings, db_session, phone_kind="work")
    assert guarantor.phone_kind == "work"
    assert all(_send_time(policy, guarantor, c) == "" for c in PHONE)
    change = protections.restrict_channels(
        db_session, CLERK, account.account_number, RestrictionKind.NO_CALLS_AT_WORK
    )
    assert {(e.kind, e.channel) for e in change.events} == {
        (ChannelEventKind.RESTRICTED, Channel.CALL),
        (ChannelEventKind.RESTRICTED, Channel.SMS),
    }
    for channel in PHONE:
        assert "restricted at the patient's request" in _send_time(policy, guarantor, channel)
        assert "restricted at the patient's request" in _plan_time(policy, change.events, channel)
    assert _send_time(policy, guarantor, Channel.EMAIL) == ""
    assert _send_time(policy, guarantor, Channel.LETTER) == ""

    # Staff learn the number is the patient's mobile: calls and texts may go again.
    opened = protections.set_phone_kind(db_session, CLERK, account.account_number, PhoneKind.MOBILE)
    assert {(e.kind, e.channel) for e in opened.events} == {
        (ChannelEventKind.RESTRICTION_LIFTED, Channel.CALL),
        (ChannelEventKind.RESTRICTION_LIFTED, Channel.SMS),
    }
    assert all(_send_time(policy, guarantor, c) == "" for c in PHONE)
    assert all(_plan_time(policy, change.events + opened.events, c) == "" for c in PHONE)


def test_no_calls_at_work_leaves_a_known_mobile_alone_and_blocks_an_unknown_number(
    settings: Settings, db_session: Session
) -> None:
    mobile, guarantor, policy = _account(settings, db_session, phone_kind="mobile")
    change = protections.restrict_channels(
        db_session, CLERK, mobile.account_number, RestrictionKind.NO_CALLS_AT_WORK
    )
    assert change.events == []
    assert all(_send_time(policy, guarantor, c) == "" for c in PHONE)

    unknown, other, policy = _account(settings, db_session, phone="+16175550111")
    assert other.phone_kind == ""
    change = protections.restrict_channels(
        db_session, CLERK, unknown.account_number, RestrictionKind.NO_CALLS_AT_WORK
    )
    assert {e.channel for e in change.events} == set(PHONE)
    assert all(_send_time(policy, other, c) for c in PHONE)


def test_a_new_number_of_unknown_kind_forgets_the_old_numbers_kind(
    settings: Settings, db_session: Session
) -> None:
    account, guarantor, _ = _account(settings, db_session, phone_kind="mobile")
    intake = Intake(sessionmaker(bind=db_session.get_bind()), None, settings)
    same = balance_row(
        account_number=account.account_number,
        guarantor_id=guarantor.external_ref,
        charge_ref="C-second",
        phone_kind="",
    )
    intake.post_account(db_session, account.account_number, [BalanceRow.model_validate(same)])
    assert guarantor.phone_kind == "mobile"  # same number, kind not repeated: kept
    moved = same | {"charge_ref": "C-third", "phone": "+12125550199"}
    intake.post_account(db_session, account.account_number, [BalanceRow.model_validate(moved)])
    assert guarantor.phone_kind == ""  # a new number: its kind is not known


def test_lifting_a_restriction_restores_the_channels_it_alone_closed(
    settings: Settings, db_session: Session
) -> None:
    account, guarantor, policy = _account(settings, db_session, sms_consent="yes")
    change = protections.restrict_channels(
        db_session, CLERK, account.account_number, RestrictionKind.MAIL_ONLY
    )
    blocked = (Channel.EMAIL, Channel.SMS, Channel.CALL)
    assert all(_send_time(policy, guarantor, c) for c in blocked)
    lifted = protections.lift_restriction(
        db_session, CLERK, account.account_number, RestrictionKind.MAIL_ONLY
    )
    for channel in blocked:
        assert _send_time(policy, guarantor, channel) == "", channel
        assert _plan_time(policy, change.events + lifted.events, channel) == "", channel


def test_lifting_a_restriction_never_clears_an_opt_out_or_missing_consent(
    settings: Settings, db_session: Session
) -> None:
    account, guarantor, policy = _account(settings, db_session, sms_consent="yes")
    stop = [
        ChannelEventSignal(reference="stop-1", kind=ChannelEventKind.OPTED_OUT, channel=c)
        for c in (Channel.SMS, Channel.CALL, Channel.EMAIL)
    ]
    for event in stop:  # STOP by text, "stop calling me" on the phone, an unsubscribe link
        record_channel_event(db_session, guarantor, event)
    change = protections.restrict_channels(
        db_session, CLERK, account.account_number, RestrictionKind.MAIL_ONLY
    )
    lifted = protections.lift_restriction(
        db_session, CLERK, account.account_number, RestrictionKind.MAIL_ONLY
    )
    for channel in (Channel.SMS, Channel.CALL, Channel.EMAIL):
        assert "opted out" in _send_time(policy, guarantor, channel), channel
        assert "opted out" in _plan_time(policy, stop + change.events + lifted.events, channel)

    # Never consented to texts: lifting "no texts" does not make a consent.
    other, never, policy = _account(settings, db_session, sms_consent="no")
    protections.restrict_channels(db_session, CLERK, other.account_number, RestrictionKind.NO_TEXTS)
    protections.lift_restriction(db_session, CLERK, other.account_number, RestrictionKind.NO_TEXTS)
    assert "no recorded consent" in _send_time(policy, never, Channel.SMS)
    assert _send_time(policy, never, Channel.EMAIL) == ""


def test_a_phone_kind_needs_a_number(settings: Settings, db_session: Session) -> None:
    account, guarantor, _ = _account(settings, db_session, phone="", sms_consent="no")
    with pytest.raises(ValueError, match="phone_kind: the guarantor has no phone number"):
        protections.set_phone_kind(db_session, CLERK, account.account_number, PhoneKind.WORK)
    assert guarantor.phone_kind == ""
