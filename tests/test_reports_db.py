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

import pytest
from sqlalchemy.orm import Session

from services import reports
from tests.support.report_ledger import Ledger, build_ledger

AS_OF = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)  # a Tuesday; months Sep, Oct, Nov 2026


@pytest.fixture
def ledger(db_session: Session) -> Ledger:
    return build_ledger(db_session, AS_OF)


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
    other = Ledger(f"other-{uuid.uuid4().hex[:8]}", AS_OF, {})
    for name in reports.REPORTS:
        mine, theirs = _build(db_session, ledger, name), _build(db_session, other, name)
        assert mine.rows != theirs.rows, name
    empty = _build(db_session, other, "days-in-ar")
    assert empty.figures["days"] is None and empty.rows[-1] == [
        "days in A/R",
        "n/a (nothing charged)",
    ]


def test_unknown_report_and_bad_options_are_named() -> None:
    with pytest.raises(reports.UnknownReport, match="name: unknown report 'nope'"):
        reports.build(None, "nope", reports.Options(AS_OF))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="months: between 1 and 120"):
        reports.Options(AS_OF, months=0)
    with pytest.raises(ValueError, match="period_days"):
        reports.Options(AS_OF, period_days=0)
