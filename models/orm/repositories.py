"""Repositories: read and write ledger rows in the caller's session. They never commit."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, inspect, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, selectinload

from config.loader import PolicyBundle
from models.actions import AdjustmentKind
from models.orm.account import (
    Account,
    AccountStatus,
    Adjustment,
    ChargeLine,
    Payment,
)
from models.orm.approval import StaffTask, TaskKind, TaskStatus
from models.orm.base import new_id
from models.orm.communication import Communication
from models.orm.guarantor import ChannelPreference, Deliverability, Guarantor
from models.orm.policy_version import PolicyVersion
from models.payloads import ChannelStatus, ContactProfile
from models.policy import Channel
from services.locations import patient_locations


def store_policy_version(session: Session, bundle: PolicyBundle) -> None:
    """Keep the exact version a workflow is started on; a version never changes once stored.

    Once per session: an import of thousands of accounts on one policy writes it once.
    """
    stored: set[str] = session.info.setdefault("stored_policy_versions", set())
    if bundle.hash in stored:
        return
    stored.add(bundle.hash)
    session.execute(
        insert(PolicyVersion)
        .values(
            hash=bundle.hash,
            name=bundle.policy.name,
            source_path=bundle.source,
            document=bundle.document(),
        )
        .on_conflict_do_nothing(index_elements=["hash"])
    )


BATCH_ACCOUNTS = "dunning.batch.accounts"
BATCH_GUARANTORS = "dunning.batch.guarantors"
NEW_ACCOUNTS = "dunning.batch.new_accounts"
NEW_GUARANTORS = "dunning.batch.new_guarantors"
"""``session.info`` keys of a bulk import (:func:`preload_batch`): the accounts and guarantors
of a chunk read in one query each, and those created in this session (nothing of them is in the
database yet, so questions about their earlier rows need no query)."""


def preload_batch(
    session: Session, account_numbers: Sequence[str], guarantor_refs: Sequence[str]
) -> None:
    """Read a chunk's accounts and guarantors in two queries, so that posting each account asks
    the database nothing and the session writes the whole chunk in one flush (multi-row
    INSERTs)."""
    accounts: dict[str, Account | None] = dict.fromkeys(account_numbers)
    for account in session.scalars(
        select(Account).where(Account.account_number.in_(list(account_numbers)))
    ):
        accounts[account.account_number] = account
    guarantors: dict[str, Guarantor | None] = dict.fromkeys(guarantor_refs)
    for guarantor in session.scalars(
        select(Guarantor)
        .where(Guarantor.external_ref.in_(list(guarantor_refs)))
        .options(selectinload(Guarantor.channels))
    ):
        guarantors[guarantor.external_ref] = guarantor
    session.info[BATCH_ACCOUNTS] = accounts
    session.info[BATCH_GUARANTORS] = guarantors
    session.info.setdefault(NEW_ACCOUNTS, set())
    session.info.setdefault(NEW_GUARANTORS, set())


DEFERRED = "dunning.batch.deferred"


def add_dependent(session: Session, row: object) -> None:
    """Add a row that refers to an account or guarantor by id alone (no relationship tells the
    session to write it after them): in a bulk import it waits for :func:`flush_batch`."""
    if BATCH_ACCOUNTS in session.info:
        session.info.setdefault(DEFERRED, []).append(row)
    else:
        session.add(row)


def flush_batch(session: Session) -> None:
    """Write a bulk import's accounts and guarantors, then the rows that refer to them."""
    session.flush()
    insert_rows(session, session.info.pop(DEFERRED, []))
    session.flush()
    for key in (BATCH_ACCOUNTS, BATCH_GUARANTORS, NEW_ACCOUNTS, NEW_GUARANTORS):
        session.info.pop(key, None)


def insert_rows(session: Session, rows: Sequence[object]) -> None:
    """Insert new ORM rows nobody reads back in this session (queued messages, audit events):
    one ``executemany`` per table and set of columns, without RETURNING their ids, which psycopg
    sends as one pipeline of one prepared statement. The ORM's flush would fetch every
    generated id and build one statement with a parameter per value, parsed again each time."""
    groups: dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]] = {}
    for row in rows:
        state = inspect(row)
        values = {
            attr.columns[0].key: state.dict[attr.key]
            for attr in state.mapper.column_attrs
            if attr.key in state.dict
        }
        table = state.mapper.local_table
        assert isinstance(table, Table)
        groups.setdefault((table, tuple(values)), []).append(values)
    for (table, _), params in groups.items():
        session.execute(table.insert(), params)


def is_new(session: Session, key: str, row_id: uuid.UUID | None) -> bool:
    """Whether this account or guarantor was created in this session's bulk import."""
    return row_id is not None and row_id in session.info.get(key, ())


def account_by_number(session: Session, account_number: str) -> Account | None:
    preloaded: dict[str, Account | None] | None = session.info.get(BATCH_ACCOUNTS)
    if preloaded is not None and account_number in preloaded:
        return preloaded[account_number]
    return session.scalars(
        select(Account).where(Account.account_number == account_number)
    ).one_or_none()


def new_account(session: Session, **fields: Any) -> Account:
    """A new account with its id given now (no flush needed to know it)."""
    account = Account(id=new_id(), **fields)
    session.add(account)
    preloaded: dict[str, Account | None] | None = session.info.get(BATCH_ACCOUNTS)
    if preloaded is not None:
        preloaded[account.account_number] = account
        session.info[NEW_ACCOUNTS].add(account.id)
    return account


def upsert_guarantor(session: Session, external_ref: str, fields: dict[str, Any]) -> Guarantor:
    preloaded: dict[str, Guarantor | None] | None = session.info.get(BATCH_GUARANTORS)
    if preloaded is not None and external_ref in preloaded:
        guarantor = preloaded[external_ref]
    else:
        guarantor = session.scalars(
            select(Guarantor)
            .where(Guarantor.external_ref == external_ref)
            .options(selectinload(Guarantor.channels))
        ).one_or_none()
    if guarantor is None:
        guarantor = Guarantor(id=new_id(), external_ref=external_ref, channels=[], **fields)
        session.add(guarantor)
        if preloaded is not None:
            preloaded[external_ref] = guarantor
            session.info[NEW_GUARANTORS].add(guarantor.id)
    else:
        for key, value in fields.items():
            setattr(guarantor, key, value)
    return guarantor


def set_channel_consent(
    session: Session, guarantor: Guarantor, channel: Channel, consent: bool
) -> None:
    pref = next((p for p in guarantor.channels if p.channel is channel), None)
    if pref is None:
        guarantor.channels.append(ChannelPreference(channel=channel, consent=consent))
    elif pref.consent != consent:
        pref.consent = consent
        pref.updated_at = dt.datetime.now(dt.UTC)


def contact_profile(guarantor: Guarantor, sms_requires_consent: bool = True) -> ContactProfile:
    """What the workflow may know of a guarantor's channels: flags only, never addresses."""
    prefs = {p.channel: p for p in guarantor.channels}
    points = {
        Channel.LETTER: bool(guarantor.address_line1 and guarantor.city and guarantor.postal_code),
        Channel.EMAIL: bool(guarantor.email),
        Channel.SMS: bool(guarantor.phone),
        Channel.CALL: bool(guarantor.phone),
    }
    channels: dict[Channel, ChannelStatus] = {}
    for channel, present in points.items():
        pref = prefs.get(channel)
        reachable, reason = present, "" if present else "no contact point"
        if pref is not None and pref.deliverability is not Deliverability.OK:
            reachable, reason = False, pref.deliverability.value
        consent = True
        if pref is not None and pref.opted_out_at is not None:
            consent, reason = False, "opted out"
        elif channel is Channel.SMS and sms_requires_consent and not (pref and pref.consent):
            consent, reason = False, "no recorded consent (TCPA)"
        restricted = pref is not None and pref.restricted_at is not None
        channels[channel] = ChannelStatus(
            reachable=reachable, consent=consent, reason=reason, restricted=restricted
        )
    return ContactProfile(
        time_zone=guarantor.time_zone or "",
        language=guarantor.language,
        channels=channels,
        locations=patient_locations(guarantor.postal_code, guarantor.phone),
        state=guarantor.region,  # residence selects the state's rules (workflows.state_rules)
    )


def add_charge_line(session: Session, account: Account, line: ChargeLine) -> bool:
    """Insert a charge line unless its reference is already on the account. True if new."""
    added: set[tuple[uuid.UUID, str]] = session.info.setdefault("dunning.batch.lines", set())
    if (account.id, line.external_ref) in added:
        return False
    # An account created in this session has no line in the database yet.
    exists = not is_new(session, NEW_ACCOUNTS, account.id) and session.scalar(
        select(func.count())
        .select_from(ChargeLine)
        .where(ChargeLine.account_id == account.id, ChargeLine.external_ref == line.external_ref)
    )
    if exists:
        return False
    added.add((account.id, line.external_ref))
    line.account_id = account.id
    session.add(line)
    account.balance_cents += line.balance_cents
    return True


class ReferenceConflict(ValueError):
    """A reference already posted with another amount, kind or account: never a silent duplicate."""


def record_payment(
    session: Session,
    account: Account,
    reference: str,
    amount_cents: int,
    received_at: dt.datetime,
    method: str = "other",
    posted_by: str = "system",
) -> tuple[Payment, bool]:
    """Insert a payment once per reference and lower the balance. Returns (payment, is_new).

    Raises:
        ReferenceConflict: the reference was already used for another account or amount.
    """
    inserted = session.execute(
        insert(Payment)
        .values(
            id=new_id(),
            account_id=account.id,
            reference=reference,
            amount_cents=amount_cents,
            received_at=received_at,
            method=method,
            posted_by=posted_by,
        )
        .on_conflict_do_nothing(index_elements=["reference"])
        .returning(Payment.id)
    ).scalar()
    payment = session.scalars(select(Payment).where(Payment.reference == reference)).one()
    if payment.account_id != account.id:
        raise ReferenceConflict(f"reference: {reference!r} is already used by another account")
    if inserted is None and payment.amount_cents != amount_cents:
        raise ReferenceConflict(
            f"reference: {reference!r} was already posted for {payment.amount_cents} cents,"
            f" not {amount_cents}; use a new reference for a new payment"
        )
    if inserted is not None:
        account.balance_cents -= amount_cents
    return payment, inserted is not None


def record_adjustment(
    session: Session,
    account: Account,
    reference: str,
    kind: str,
    amount_cents: int,
    posted_by: str = "system",
) -> bool:
    """Insert an adjustment once per reference and change the balance. True if new.

    Raises:
        ReferenceConflict: the reference was already used for another account, kind or amount.
    """
    inserted = session.execute(
        insert(Adjustment)
        .values(
            id=new_id(),
            account_id=account.id,
            reference=reference,
            kind=AdjustmentKind(kind),
            amount_cents=amount_cents,
            posted_by=posted_by,
        )
        .on_conflict_do_nothing(index_elements=["reference"])
        .returning(Adjustment.id)
    ).scalar()
    stored = session.execute(
        select(Adjustment.account_id, Adjustment.kind, Adjustment.amount_cents).where(
            Adjustment.reference == reference
        )
    ).one()
    if stored[0] != account.id:
        raise ReferenceConflict(f"reference: {reference!r} is already used by another account")
    if inserted is None and (stored[1].value != kind or stored[2] != amount_cents):
        raise ReferenceConflict(
            f"reference: {reference!r} was already posted as {stored[1].value}"
            f" {stored[2]:+d} cents; use a new reference for a new adjustment"
        )
    if inserted is not None:
        account.balance_cents += amount_cents
    return inserted is not None


def open_accounts(session: Session) -> Sequence[Account]:
    return session.scalars(select(Account).where(Account.status == AccountStatus.OPEN)).all()


def communications_for(session: Session, account: Account) -> Sequence[Communication]:
    return session.scalars(
        select(Communication)
        .where(Communication.account_id == account.id)
        .order_by(Communication.created_at)
    ).all()


AGING_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-30", 0, 30),
    ("31-60", 31, 60),
    ("61-90", 61, 90),
    ("91-120", 91, 120),
    ("120+", 121, None),
)


def aging(session: Session, as_of: dt.datetime) -> dict[str, int]:
    """Open receivables in cents by age since the account opened: 0-30 ... 120+ days."""
    age = func.date_part("day", as_of - Account.opened_at)
    totals = {name: 0 for name, _, _ in AGING_BUCKETS}
    rows = session.execute(
        select(age.label("age"), Account.balance_cents).where(
            Account.status == AccountStatus.OPEN, Account.balance_cents > 0
        )
    ).all()
    for days, cents in rows:
        for name, low, high in AGING_BUCKETS:
            if days >= low and (high is None or days <= high):
                totals[name] += cents
                break
    return totals


def unreachable_receivables(session: Session) -> tuple[int, int]:
    """Open accounts parked because no channel reaches the patient (a locate task is open):
    how many, and their balance in cents. Part of the aging buckets, shown beside them."""
    row = session.execute(
        select(func.count(Account.id), func.coalesce(func.sum(Account.balance_cents), 0)).where(
            Account.status == AccountStatus.OPEN,
            Account.balance_cents > 0,
            Account.id.in_(
                select(StaffTask.account_id).where(
                    StaffTask.kind == TaskKind.LOCATE, StaffTask.status == TaskStatus.OPEN
                )
            ),
        )
    ).one()
    return int(row[0]), int(row[1])
