"""Reports from the live ledger against a hand-computed ledger, on a real PostgreSQL.

Each test builds five accounts on a policy of its own (reports are whole-database; the policy
filter scopes every figure to this test's rows) in a transaction rolled back at its end, and reads
every report as at a fixed instant. The expected figures are worked out by hand in the comments.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from dataclasses import dataclass

import pytest
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

AS_OF = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)  # a Tuesday; months Sep, Oct, Nov 2026
COSTS = {Channel.LETTER: 750_000, Channel.EMAIL: 1_000, Channel.SMS: 7_900, Channel.CALL: 2_500_000}


def ago(days: int) -> dt.datetime:
    return AS_OF - dt.timedelta(days=days)


@dataclass
class Ledger:
    policy: str
    accounts: dict[str, Account]

    def options(self, **kw: object) -> reports.Options:
        fields: dict[str, object] = {"months": 3, "policy": self.policy, "costs": COSTS}
        fields.update(kw)
        return reports.Options(AS_OF, **fields)  # type: ignore[arg-type]


class Builder:
    def __init__(self, session: Session, policy: str) -> None:
        self.s, self.policy, self.tag = session, policy, uuid.uuid4().hex[:8]
        self.n = 0

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
            opened_at=ago(opened_days),
        )
        self.s.add(account)
        self.s.flush()
        repo.add_charge_line(
            self.s,
            account,
            ChargeLine(
                external_ref=f"C-{key}",
                service_date=ago(opened_days).date(),
                description="Office visit",
                created_at=ago(opened_days),
                **line,
            ),
        )
        self.s.flush()
        return account

    def pay(self, account: Account, cents: int, days: int) -> None:
        self.n += 1
        repo.record_payment(self.s, account, f"P-{self.tag}-{self.n}", cents, ago(days))

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
                sent_at=ago(days) if status is CommunicationStatus.SENT else None,
            )
        )

    def end(self, account: Account, status: AccountStatus, days: int, balance: int) -> None:
        account.status, account.closed_at, account.balance_cents = status, ago(days), balance

    def hold(self, account: Account, reason: str, days: int, outcome: str = "done") -> None:
        self.s.add(
            AuditEvent(
                actor="test",
                action="hold",
                account_id=account.id,
                at=ago(days),
                detail={"outcome": outcome, "reason": reason},
            )
        )

    def opt_out(self, account: Account, channel: Channel, days: int) -> None:
        self.s.add(
            ChannelPreference(
                guarantor_id=account.guarantor_id,
                channel=channel,
                consent=False,
                opted_out_at=ago(days),
            )
        )


@pytest.fixture
def ledger(db_session: Session) -> Ledger:
    """Five accounts on a policy of their own (its name starts with '=': a formula, for the CSV).

    a1: 10 days old, $100 charged, insurance paid $20 (owes $80), paid $30 on day -5: open $50.
    a2: 100 days old, $200 charged, contractual adjustment $50 (owes $150), insurance denial
        +$10 posted on day -20: open $160.
    a3: 40 days old, $60 charged, $10 paid at the visit: written off on day -3 ($50).
    a4: 130 days old, $300 charged, paid $40 on day -60, placed on day -20 (owed $260 then),
        paid $25 on day -2 (to the agency's credit): placed, $235 left.
    a5: 50 days old, $202 charged, paid $197 on day -15 and settled that day ($5 written off).
    """
    b = Builder(db_session, f"=rpt-{uuid.uuid4().hex[:8]}")
    a1 = b.account("a1", 10, charges_cents=100_00, insurance_paid_cents=20_00)
    a2 = b.account("a2", 100, charges_cents=200_00, insurance_adjustment_cents=50_00)
    a3 = b.account("a3", 40, charges_cents=60_00, patient_paid_cents=10_00)
    a4 = b.account("a4", 130, charges_cents=300_00)
    a5 = b.account("a5", 50, charges_cents=202_00)
    b.pay(a1, 30_00, 5)
    db_session.add(
        Adjustment(
            account_id=a2.id,
            reference=f"ADJ-{b.tag}",
            kind=AdjustmentKind.INSURANCE_DENIAL,
            amount_cents=10_00,
            created_at=ago(20),
        )
    )
    a2.balance_cents += 10_00
    b.pay(a4, 40_00, 60)
    a4.status, a4.placed_at = AccountStatus.PLACED, ago(20)
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
    db_session.flush()
    return Ledger(b.policy, {"a1": a1, "a2": a2, "a3": a3, "a4": a4, "a5": a5})


def _build(session: Session, ledger: Ledger, name: str, **kw: object) -> reports.Report:
    return reports.build(session, name, ledger.options(**kw))


def test_aging_counts_and_amounts_of_open_balances(db_session: Session, ledger: Ledger) -> None:
    report = _build(db_session, ledger, "aging")
    assert report.rows == [
        ["days", "accounts", "amount"],
        ["0-30", "1", "50.00"],
        ["31-60", "0", "0.00"],
        ["61-90", "0", "0.00"],
        ["91-120", "1", "160.00"],
        ["120+", "0", "0.00"],
        ["total", "2", "210.00"],
    ]
    assert report.chart is not None and report.chart.values == [50_00, 0, 0, 160_00, 0]


def test_days_in_ar_is_ar_over_average_daily_charges(db_session: Session, ledger: Ledger) -> None:
    # Visits of the last 90 days (2026-08-27 .. 2026-11-24): a1 $80, a3 $60, a5 $202 = $342;
    # a2 (August 16) and a4 (July) are older. $342 / 90 = $3.80 a day; A/R $210 / $3.80 = 55.3.
    report = _build(db_session, ledger, "days-in-ar")
    assert report.figures == {"ar_cents": 210_00, "charged_cents": 342_00, "days": 55.3}
    assert report.rows[-1] == ["days in A/R", "55.3"]
    # Over 30 days only a1 ($80) is in the period: $2.667 a day, 78.75 days.
    assert _build(db_session, ledger, "days-in-ar", period_days=30).figures["days"] == 78.8


def test_share_of_ar_over_90_days(db_session: Session, ledger: Ledger) -> None:
    report = _build(db_session, ledger, "over-90")
    assert report.figures == {
        "over_cents": 160_00,
        "over_accounts": 1,
        "ar_cents": 210_00,
        "share": 160 / 210,
    }
    assert report.rows[2] == ["over 90 days", "1", "160.00", "76.2%"]


def test_collection_rate_by_month(db_session: Session, ledger: Ledger) -> None:
    # Charged by visit month: October a3 $60 + a5 $202 = $262; November a1 $80.
    # Collected: September a4 $40; October a3's $10 at the visit; November a1 $30 + a4 $25 +
    # a5 $197 = $252.
    report = _build(db_session, ledger, "collection-rate")
    assert report.rows == [
        ["month", "charged", "collected", "collection rate"],
        ["2026-09", "0.00", "40.00", "n/a"],
        ["2026-10", "262.00", "10.00", "3.8%"],
        ["2026-11", "80.00", "252.00", "315.0%"],
    ]


def test_outcomes_by_step_paid_within_14_days(db_session: Session, ledger: Ledger) -> None:
    # statement-1: a2, a3 (once, though on two channels), a4 and a5 contacted with 14 days
    # behind them, none paid within 14 days; a1's was 10 days ago: window open.
    # reminder: a2 (no payment), a4 ($40 five days later), a5 ($197 five days later); a3's
    # suppressed reminder never went out. final: a4, whose $40 came 20 days later.
    report = _build(db_session, ledger, "outcomes-by-step")
    p = ledger.policy
    assert report.rows[1:] == [
        [p, "statement-1", "4", "0", "0.0%", "0.00", "1"],
        [p, "reminder", "3", "2", "66.7%", "237.00", "0"],
        [p, "final", "1", "0", "0.0%", "0.00", "0"],
    ]
    text = reports.to_csv(report.rows)
    assert text.splitlines()[1].startswith(f"'{p},statement-1,")  # the '=' policy stays text
    assert list(csv.reader(io.StringIO(text)))[1][0] == "'" + p


def test_cost_to_collect_by_channel(db_session: Session, ledger: Ledger) -> None:
    # Sent in the last 90 days: letters a1, a3, a5 and a4's final (4 x $0.75 = $3.00); texts
    # a2 and a4 reminders and a3's statement (3 x $0.0079); a5's email ($0.001).
    # Payments of the period, by the last message in the 14 days before: a1 $30 (letter),
    # a4 $40 (text), a5 $197 (email); a4's $25 of day -2 had no message before it.
    report = _build(db_session, ledger, "cost-by-channel")
    assert report.figures == {
        "letter": (4, 3_000_000, 30_00),
        "email": (1, 1_000, 197_00),
        "sms": (3, 23_700, 40_00),
        "call": (0, 0, 0),
        "unattributed": 25_00,
        "total": (8, 3_024_700, 292_00),
    }
    assert report.rows[1] == ["letter", "4", "0.75", "3.00", "30.00", "0.1000"]
    assert report.rows[-1] == ["total", "8", "", "3.02", "292.00", "0.0104"]


def test_opt_outs_by_month_and_channel(db_session: Session, ledger: Ledger) -> None:
    report = _build(db_session, ledger, "opt-outs")
    assert report.rows == [
        ["month", "letter", "email", "sms", "call", "total", "owed now"],
        ["2026-09", "0", "0", "0", "0", "0", "0.00"],
        ["2026-10", "0", "1", "0", "0", "1", "160.00"],
        ["2026-11", "0", "0", "1", "0", "1", "50.00"],
    ]


def test_disputes_by_month_with_what_was_owed_then(db_session: Session, ledger: Ledger) -> None:
    report = _build(db_session, ledger, "disputes")
    assert report.rows == [
        [
            "month",
            "disputes",
            "disputes amount",
            "NSA disputes",
            "NSA disputes amount",
            "total",
            "total amount",
        ],
        ["2026-09", "0", "0.00", "0", "0.00", "0", "0.00"],
        ["2026-10", "1", "150.00", "0", "0.00", "1", "150.00"],
        ["2026-11", "0", "0.00", "1", "50.00", "1", "50.00"],
    ]


def test_write_offs_and_settlements_by_month(db_session: Session, ledger: Ledger) -> None:
    report = _build(db_session, ledger, "write-offs")
    assert report.rows[-1] == ["2026-11", "1", "50.00", "1", "5.00", "2", "55.00"]
    assert [r[5] for r in report.rows[1:3]] == ["0", "0"]
    assert report.figures["cents"] == 55_00


def test_placements_by_month_with_what_was_owed_when_placed(
    db_session: Session, ledger: Ledger
) -> None:
    report = _build(db_session, ledger, "placements")
    assert report.rows == [
        ["month", "placed", "amount placed"],
        ["2026-09", "0", "0.00"],
        ["2026-10", "0", "0.00"],
        ["2026-11", "1", "260.00"],
    ]
    assert report.chart is not None and report.chart.shown[-1] == "1 ($260.00)"


def test_every_report_is_scoped_to_its_policy(db_session: Session, ledger: Ledger) -> None:
    """Another policy's reports see none of these rows: every figure comes from the filter."""
    other = Ledger(f"other-{uuid.uuid4().hex[:8]}", {})
    for name in reports.REPORTS:
        mine, theirs = _build(db_session, ledger, name), _build(db_session, other, name)
        assert mine.rows != theirs.rows, name


def test_unknown_report_and_bad_options_are_named() -> None:
    with pytest.raises(reports.UnknownReport, match="name: unknown report 'nope'"):
        reports.build(None, "nope", reports.Options(AS_OF))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="months: between 1 and 120"):
        reports.Options(AS_OF, months=0)
    with pytest.raises(ValueError, match="period_days"):
        reports.Options(AS_OF, period_days=0)
