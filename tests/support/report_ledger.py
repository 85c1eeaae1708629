"""A small ledger with hand-computed report figures, shared by the reports' tests (database,
CLI, browser): five accounts on a policy of their own, dated relative to an instant."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from models.actions import AdjustmentKind
from models.orm import (
    Account,
    AccountStatus,
    Adjustment,
    AuditEvent,
    ChannelPreference,
    ChargeLine,
    Communication,
    CommunicationStatus,
)
from models.orm import repositories as repo
from models.policy import Channel
from services import reports

COSTS = {Channel.LETTER: 750_000, Channel.EMAIL: 1_000, Channel.SMS: 7_900, Channel.CALL: 2_500_000}


@dataclass
class Ledger:
    policy: str
    as_of: dt.datetime
    accounts: dict[str, Account]

    def options(self, **kw: object) -> reports.Options:
        fields: dict[str, object] = {"months": 3, "policy": self.policy, "costs": COSTS}
        fields.update(kw)
        return reports.Options(self.as_of, **fields)  # type: ignore[arg-type]


class Builder:
    def __init__(self, session: Session, policy: str, as_of: dt.datetime) -> None:
        self.s, self.policy, self.as_of = session, policy, as_of
        self.tag, self.n = uuid.uuid4().hex[:8], 0

    def ago(self, days: int) -> dt.datetime:
        return self.as_of - dt.timedelta(days=days)

    def account(self, key: str, opened_days: int, **line: int) -> Account:
        guarantor = repo.upsert_guarantor(
            self.s,
            f"G-{self.tag}-{key}",
            {"first_name": "Testy", "last_name": "Synthetic", "email": f"{key}@example.test"},
        )
        account = Account(
            account_number=f"R-{self.tag}-{key}",
            guarantor=guarantor,
            policy_name=self.policy,
            opened_at=self.ago(opened_days),
        )
        self.s.add(account)
        self.s.flush()
        repo.add_charge_line(
            self.s,
            account,
            ChargeLine(
                external_ref=f"C-{key}",
                service_date=self.ago(opened_days).date(),
                description="Office visit",
                created_at=self.ago(opened_days),
                **line,
            ),
        )
        self.s.flush()
        return account

    def pay(self, account: Account, cents: int, days: int) -> None:
        self.n += 1
        repo.record_payment(self.s, account, f"P-{self.tag}-{self.n}", cents, self.ago(days))

    def sent(
        self,
        account: Account,
        step: str,
        channel: Channel,
        days: int,
        status: CommunicationStatus = CommunicationStatus.SENT,
    ) -> None:
        self.n += 1
        self.s.add(
            Communication(
                idempotency_key=f"K-{self.tag}-{self.n}",
                account_id=account.id,
                step_id=step,
                policy_hash="0" * 64,
                channel=channel,
                template=step,
                status=status,
                sent_at=self.ago(days) if status is CommunicationStatus.SENT else None,
            )
        )

    def end(self, account: Account, status: AccountStatus, days: int, balance: int) -> None:
        account.status, account.closed_at, account.balance_cents = status, self.ago(days), balance

    def hold(self, account: Account, reason: str, days: int, outcome: str = "done") -> None:
        self.s.add(
            AuditEvent(
                actor="test",
                action="hold",
                account_id=account.id,
                at=self.ago(days),
                detail={"outcome": outcome, "reason": reason},
            )
        )

    def opt_out(self, account: Account, channel: Channel, days: int) -> None:
        self.s.add(
            ChannelPreference(
                guarantor_id=account.guarantor_id,
                channel=channel,
                consent=False,
                opted_out_at=self.ago(days),
            )
        )


def build_ledger(session: Session, as_of: dt.datetime) -> Ledger:
    """Five accounts on a policy of their own (its name starts with '=': a formula, for the CSV).

    a1: 10 days old, $100 charged, insurance paid $20 (owes $80), paid $30 on day -5: open $50.
    a2: 100 days old, $200 charged, contractual adjustment $50 (owes $150), insurance denial
        +$10 posted on day -20: open $160.
    a3: 40 days old, $60 charged, $10 paid at the visit: written off on day -3 ($50).
    a4: 130 days old, $300 charged, paid $40 on day -60, placed on day -20 (owed $260 then),
        paid $25 on day -2 (to the agency's credit): placed, $235 left.
    a5: 50 days old, $202 charged, paid $197 on day -15 and settled that day ($5 written off).
    """
    b = Builder(session, f"=rpt-{uuid.uuid4().hex[:8]}", as_of)
    a1 = b.account("a1", 10, charges_cents=100_00, insurance_paid_cents=20_00)
    a2 = b.account("a2", 100, charges_cents=200_00, insurance_adjustment_cents=50_00)
    a3 = b.account("a3", 40, charges_cents=60_00, patient_paid_cents=10_00)
    a4 = b.account("a4", 130, charges_cents=300_00)
    a5 = b.account("a5", 50, charges_cents=202_00)
    b.pay(a1, 30_00, 5)
    session.add(
        Adjustment(
            account_id=a2.id,
            reference=f"ADJ-{b.tag}",
            kind=AdjustmentKind.INSURANCE_DENIAL,
            amount_cents=10_00,
            created_at=b.ago(20),
        )
    )
    a2.balance_cents += 10_00
    b.pay(a4, 40_00, 60)
    a4.status, a4.placed_at = AccountStatus.PLACED, b.ago(20)
    b.pay(a4, 25_00, 2)
    b.pay(a5, 197_00, 15)
    b.end(a3, AccountStatus.WRITTEN_OFF, 3, 0)
    b.end(a5, AccountStatus.SETTLED, 15, 0)
    # Messages: statement-1 on the day each account opened; reminders later.
    for account, days in ((a1, 10), (a2, 100), (a3, 40), (a4, 130), (a5, 50)):
        b.sent(account, "statement-1", Channel.LETTER, days)
    b.sent(a3, "statement-1", Channel.SMS, 39)  # a second channel of the same step: one contact
    b.sent(a2, "reminder", Channel.SMS, 70)
    b.sent(a4, "reminder", Channel.SMS, 65)  # a4 pays $40 five days later
    b.sent(a5, "reminder", Channel.EMAIL, 20)  # a5 pays $197 five days later
    b.sent(a4, "final", Channel.LETTER, 80)  # a4's $40 of day -60 is 20 days later: not within
    b.sent(a3, "reminder", Channel.EMAIL, 10, CommunicationStatus.SUPPRESSED)  # never went out
    b.hold(a2, "dispute", 30)  # owed $150 then (the denial came on day -20)
    b.hold(a1, "no_surprises_dispute", 4)  # owed $80 - $30 = $50 then
    b.hold(a5, "dispute", 16, outcome="refused")  # refused: not a dispute on record
    b.hold(a5, "itemized_bill", 16)  # a hold, not a dispute
    b.opt_out(a1, Channel.SMS, 23)  # November; a1's guarantor owes $50 now
    b.opt_out(a2, Channel.EMAIL, 53)  # October; a2's guarantor owes $160 now
    b.opt_out(a4, Channel.SMS, 170)  # June: before the three months
    session.flush()
    return Ledger(b.policy, as_of, {"a1": a1, "a2": a2, "a3": a3, "a4": a4, "a5": a5})
