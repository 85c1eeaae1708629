"""The preview counts calendar days in the practice's zone, not 24-hour periods.

Before: across the start of daylight saving time (14 March 2027) the interval to a step at
10:00 is an hour short of whole days, and the day-120 agency referral showed as "day 119".
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from typer.testing import CliRunner

from cli.main import app
from config.loader import load_policy
from config.settings import POLICY_DIR
from workflows.decisions import calendar_day

runner = CliRunner()


def test_a_day_120_step_is_day_120_across_a_dst_change() -> None:
    result = runner.invoke(
        app,
        [
            "policy",
            "preview",
            str(POLICY_DIR / "physician.yaml"),
            "--balance",
            "250",
            "--first-statement",
            "2027-01-04",  # a Monday in winter; day 120 is Tuesday 4 May 2027, in summer time
            "--tz",
            "America/New_York",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    by = {e["step"]: e for e in entries if e["step"]}
    referral = by["agency-referral"]
    assert referral["date"] == "2027-05-04"
    assert referral["day"] == 120
    start = dt.date(2027, 1, 4)
    for e in entries:
        assert e["day"] == (dt.date.fromisoformat(e["date"]) - start).days, e


def test_calendar_day_uses_the_practice_zone() -> None:
    policy = load_policy("physician").policy  # America/New_York
    start = dt.datetime(2027, 3, 13, 15, 0, tzinfo=dt.UTC)  # 10:00 EST, Saturday
    after = dt.datetime(2027, 3, 14, 14, 0, tzinfo=dt.UTC)  # 10:00 EDT the next day: 23 hours
    assert calendar_day(policy, start, after) == 1
    # 20:00 in New York on the same day is already tomorrow in UTC: still day 0.
    assert calendar_day(policy, start, dt.datetime(2027, 3, 14, 1, 0, tzinfo=dt.UTC)) == 0
